fn main() -> std::process::ExitCode {
    inos::cli::main()
}
