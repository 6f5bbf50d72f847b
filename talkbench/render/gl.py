"""Headless OpenGL rasteriser (moderngl over EGL: Mesa's llvmpipe on CPU, the GPU where present)."""

from __future__ import annotations

import numpy as np

from talkbench.errors import TalkbenchError
from talkbench.render.camera import Camera
from talkbench.render.mesh import vertex_normals

_VERTEX_SHADER = """
#version 330
uniform mat4 mvp;
uniform mat4 model_view;
in vec3 in_position;
in vec3 in_normal;
out vec3 v_normal;
out vec3 v_view;
void main() {
    vec4 p = model_view * vec4(in_position, 1.0);
    v_view = -p.xyz;
    v_normal = mat3(model_view) * in_normal;
    gl_Position = mvp * vec4(in_position, 1.0);
}
"""

# Lambert diffuse plus a broad Blinn-Phong lobe: a plain stand-in for pyrender's metallic 0.8,
# roughness 0.8 grey material; two-sided (the baselines skip face culling).
_FRAGMENT_SHADER = """
#version 330
uniform vec3 light_dirs[5];
uniform float light_intensity;
uniform float ambient;
uniform vec3 base_color;
in vec3 v_normal;
in vec3 v_view;
out vec4 color;
void main() {
    vec3 n = normalize(v_normal);
    vec3 view = normalize(v_view);
    if (dot(n, view) < 0.0) n = -n;
    vec3 c = ambient * base_color;
    for (int i = 0; i < 5; i++) {
        vec3 l = normalize(light_dirs[i]);
        float diff = max(dot(n, l), 0.0);
        float spec = pow(max(dot(n, normalize(l + view)), 0.0), 8.0);
        c += light_intensity * (0.25 * diff * base_color + 0.04 * spec);
    }
    color = vec4(clamp(c, 0.0, 1.0), 1.0);
}
"""


class MeshRenderer:
    """Renders frames of one mesh topology at a fixed camera. Reuse it for many frames."""

    def __init__(self, faces: np.ndarray, camera: Camera, size: int = 512, background=(0, 0, 0)):
        import moderngl

        try:
            self.ctx = moderngl.create_context(standalone=True, backend="egl")
        except Exception as exc:  # noqa: BLE001 - report any backend failure the same way
            raise TalkbenchError(
                f"cannot create a headless OpenGL context (EGL): {exc}. Install Mesa's EGL: "
                "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri"
            ) from exc
        self.faces = np.ascontiguousarray(faces, dtype=np.int32)
        self.camera = camera
        self.size = size
        self.background = tuple(c / 255 for c in background)
        self.prog = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        mv = camera.view()
        self.prog["model_view"].write(mv.T.copy().tobytes())
        self.prog["mvp"].write((camera.projection(size) @ mv).T.copy().tobytes())
        self.prog["light_dirs"].write(camera.light_directions().tobytes())
        self.prog["light_intensity"].value = 2.0
        self.prog["ambient"].value = 0.2
        self.prog["base_color"].value = (0.3, 0.3, 0.3)
        self.n_vertices = int(self.faces.max()) + 1
        self.vbo = self.ctx.buffer(reserve=self.n_vertices * 6 * 4)
        ibo = self.ctx.buffer(self.faces.tobytes())
        self.vao = self.ctx.vertex_array(self.prog, [(self.vbo, "3f 3f", "in_position", "in_normal")], ibo)
        self.fbo = self.ctx.simple_framebuffer((size, size), components=3)

    def render(self, vertices: np.ndarray, normals: np.ndarray | None = None) -> np.ndarray:
        """One frame: vertices (V, 3) -> uint8 image (size, size, 3), row 0 at the top."""
        if normals is None:
            normals = vertex_normals(vertices, self.faces)
        data = np.concatenate([vertices, normals], axis=1).astype(np.float32)
        if data.nbytes != self.vbo.size:  # vertices after the last one a face uses: a larger buffer
            self.vbo.orphan(data.nbytes)
        self.vbo.write(data.tobytes())
        self.fbo.use()
        self.ctx.enable(self.ctx.DEPTH_TEST)
        self.fbo.clear(*self.background, depth=1.0)
        self.vao.render()
        image = np.frombuffer(self.fbo.read(components=3), np.uint8).reshape(self.size, self.size, 3)
        return image[::-1]

    def render_sequence(self, vertices: np.ndarray, chunk: int = 64):
        """Yield frames for (T, V, 3) vertices; normals computed in chunks for speed."""
        for start in range(0, len(vertices), chunk):
            block = np.asarray(vertices[start : start + chunk], dtype=np.float32)
            normals = vertex_normals(block, self.faces)
            for v, n in zip(block, normals):
                yield self.render(v, n)

    def release(self) -> None:
        self.ctx.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
