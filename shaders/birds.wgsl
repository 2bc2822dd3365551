// The flock: one instanced draw per bird part. Each instance is one bird's 4x4 column-major part
// matrix, read from the SAB's matrix stream (reference §2.15) as four vec4 vertex attributes.
// Body, head and beak take the original's palette by bird index (i mod 5); wings and tail have
// one colour each (the PALETTE, WING or TAIL shader def picks). Lit by one soft key light and an
// ambient term.

#import bevy_pbr::mesh_view_bindings::view

struct Vertex {
    @builtin(instance_index) bird: u32,
    @location(0) position: vec3<f32>,
    @location(1) normal: vec3<f32>,
    @location(3) c0: vec4<f32>,
    @location(4) c1: vec4<f32>,
    @location(5) c2: vec4<f32>,
    @location(6) c3: vec4<f32>,
};

struct VertexOutput {
    @builtin(position) clip_position: vec4<f32>,
    @location(0) normal: vec3<f32>,
    @location(1) colour: vec3<f32>,
};

// 0xRRGGBB (sRGB) to linear RGB.
fn rgb(hex: u32) -> vec3<f32> {
    let srgb = vec3<f32>(f32((hex >> 16u) & 0xffu), f32((hex >> 8u) & 0xffu), f32(hex & 0xffu)) / 255.0;
    return pow(srgb, vec3<f32>(2.2));
}

fn part_colour(bird: u32) -> vec3<f32> {
#ifdef PALETTE
    var palette = array<u32, 5>(0x475569u, 0x57534eu, 0x71717au, 0x4b5563u, 0x0284c7u);
    return rgb(palette[bird % 5u]);
#else ifdef TAIL
    return rgb(0x64748bu);
#else
    return rgb(0x737373u);
#endif
}

@vertex
fn vertex(v: Vertex) -> VertexOutput {
    let world_from_local = mat4x4<f32>(v.c0, v.c1, v.c2, v.c3);
    let world = world_from_local * vec4<f32>(v.position, 1.0);
    var out: VertexOutput;
    out.clip_position = view.clip_from_world * world;
    // Part matrices are rotations and translations only, so the upper 3x3 carries normals.
    out.normal = (world_from_local * vec4<f32>(v.normal, 0.0)).xyz;
    out.colour = part_colour(v.bird);
    return out;
}

@fragment
fn fragment(in: VertexOutput) -> @location(0) vec4<f32> {
    let key = normalize(vec3<f32>(0.4, 1.0, 0.3));
    // Two-sided: wings and the tail fan are seen from above and below.
    let lambert = abs(dot(normalize(in.normal), key));
    return vec4<f32>(in.colour * (0.45 + 0.75 * lambert), 1.0);
}
