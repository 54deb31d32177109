

def test_fused_clamp_on_conv_linear_matmul_add():
    import numpy as np
    import qir

    text = """func @main(%x: tensor<1x2x3x3xf32>, %w: tensor<2x2x1x1xf32>, %a: tensor<2x2xf32>) -> (tensor<1x2x3x3xf32>, tensor<2x2xf32>, tensor<2x2xf32>, tensor<2x2xf32>) {
  %c = qir.conv2d %x, %w {clamp_min = 0.0, clamp_max = 0.5} : tensor<1x2x3x3xf32>
  %l = qir.linear %a, %a {clamp_min = -0.25} : tensor<2x2xf32>
  %m = qir.matmul %a, %a {clamp_max = 0.1} : tensor<2x2xf32>
  %s = qir.add %a, %a {clamp_min = 0.0} : tensor<2x2xf32>
  return %c, %l, %m, %s
}"""
    from backends.numpy import run

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    w = rng.standard_normal((2, 2, 1, 1)).astype(np.float32)
    a = rng.standard_normal((2, 2)).astype(np.float32)
    out = list(run(qir.parse(text), {"x": x, "w": w, "a": a}).values())
    conv = np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0])
    np.testing.assert_allclose(out[0], np.clip(conv, 0, 0.5), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1], np.maximum(a @ a.T, -0.25), rtol=1e-5)
    np.testing.assert_allclose(out[2], np.minimum(a @ a, 0.1), rtol=1e-5)
    np.testing.assert_allclose(out[3], np.maximum(a + a, 0), rtol=1e-5)
