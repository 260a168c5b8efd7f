"""Tests of workers.models: registry, wrapper and every kind of load_model spec."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from workers.models import (
    DEFAULT_MODELS,
    ModelLoadError,
    NormalizedModel,
    UnknownArch,
    export_torchscript,
    get_arch,
    images_to_tensor,
    is_torchscript,
    list_archs,
    list_models,
    load_model,
    register_arch,
    save_model_file,
)

torch.set_num_threads(1)


def test_registry() -> None:
    names = {a.name for a in list_archs()}
    assert {"madry_mnist", "cw_mnist", "lenet5_advertorch", "preact_resnet18", "preact_resnet18_w32"} <= names
    assert {a.name for a in list_archs("cifar10")} >= {"preact_resnet18_w32"}
    assert all(a.dataset == "mnist" for a in list_archs("mnist"))
    with pytest.raises(UnknownArch, match="registered: .*madry_mnist"):
        get_arch("resnet9000")
    with pytest.raises(ValueError, match="already registered"):
        register_arch("madry_mnist", "mnist")(lambda: nn.Identity())
    with pytest.raises(ValueError, match="unknown dataset"):
        register_arch("x", "imagenet")


@pytest.mark.parametrize("arch", ["madry_mnist", "cw_mnist", "lenet5_advertorch", "preact_resnet18_w32"])
def test_arch_shapes(arch: str) -> None:
    info = get_arch(arch)
    net = info.build().eval()
    out = net(torch.rand(3, *info.input_shape))
    assert out.shape == (3, 10)


def test_committed_weight_sizes_fit() -> None:
    # each committed weights file must stay <= 8 MiB in fp16
    for arch in ("madry_mnist", "cw_mnist", "preact_resnet18_w32"):
        n = sum(p.numel() for p in get_arch(arch).build().parameters())
        assert n * 2 <= 8 * 2**20, arch


def test_normalized_model() -> None:
    net = nn.Flatten()
    m = NormalizedModel(net, (0.5, 0.25, 0.0), (0.5, 0.5, 2.0), name="t")
    x = torch.ones(1, 3, 1, 1)
    assert torch.allclose(m(x), torch.tensor([[1.0, 1.5, 0.5]]))
    assert m.model_id == "t" and m.normalization["std"] == [0.5, 0.5, 2.0]
    with pytest.raises(ValueError):
        NormalizedModel(net, (0.0,), (0.0,))


def test_images_to_tensor() -> None:
    import numpy as np

    grey = np.full((2, 28, 28), 255, np.uint8)
    rgb = np.zeros((2, 32, 32, 3), np.uint8)
    rgb[..., 1] = 51
    assert images_to_tensor(grey).shape == (2, 1, 28, 28) and images_to_tensor(grey).max() == 1.0
    t = images_to_tensor(rgb)
    assert t.shape == (2, 3, 32, 32) and torch.allclose(t[:, 1], torch.tensor(0.2))
    with pytest.raises(ValueError):
        images_to_tensor(rgb.astype(np.float32))


def _ckpt(tmp_path: Path, arch: str = "preact_resnet18_w32", half: bool = False) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    net = get_arch(arch).build().eval()
    path = save_model_file(tmp_path / f"{arch}.pt", net, arch, card={"seed": 0}, half=half)
    return path, net


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    path, net = _ckpt(tmp_path)
    m = load_model(path)
    assert m.arch == "preact_resnet18_w32" and m.dataset == "cifar10"
    assert m.model_id.startswith("preact_resnet18_w32@") and len(m.model_id.split("@")[1]) == 12
    assert m.card == {"seed": 0} and not any(p.requires_grad for p in m.parameters())
    x = torch.rand(4, 3, 32, 32)
    info = get_arch("preact_resnet18_w32")
    ref = net((x - torch.tensor(info.mean).view(1, 3, 1, 1)) / torch.tensor(info.std).view(1, 3, 1, 1))
    assert torch.allclose(m(x), ref, atol=1e-5)
    # fp16 storage: half the size, same predictions within fp16 error
    hpath, _ = _ckpt(tmp_path / "h", half=True)
    assert hpath.stat().st_size < 0.6 * path.stat().st_size
    mh = load_model(hpath)
    assert next(mh.parameters()).dtype == torch.float32
    assert torch.allclose(mh(x), m(x), atol=5e-2)


def test_state_dict_needs_arch(tmp_path: Path) -> None:
    net = get_arch("cw_mnist").build()
    p = tmp_path / "sd.pt"
    torch.save(net.state_dict(), p)
    with pytest.raises(ModelLoadError, match="arch="):
        load_model(p)
    with pytest.raises(ModelLoadError, match="does not fit"):
        load_model(p, arch="madry_mnist")
    with pytest.raises(ModelLoadError, match="unknown architecture"):
        load_model(p, arch="nope")
    m = load_model(p, arch="cw_mnist", name="judge")
    assert m.model_id.startswith("judge@") and m.dataset == "mnist"


def test_torchscript_export_round_trip(tmp_path: Path) -> None:
    path, _ = _ckpt(tmp_path, "madry_mnist")
    m = load_model(path)
    out = export_torchscript(m, tmp_path / "ts.pt")
    assert is_torchscript(out) and not is_torchscript(path)
    ts = load_model(out, dataset="mnist")
    assert ts.arch == "torchscript" and ts.model_id.startswith("ts@")
    x = torch.rand(5, 1, 28, 28)
    assert torch.allclose(ts(x), m(x), atol=1e-5)
    # outside lpstudy, plain torch.jit.load does the same
    assert torch.allclose(torch.jit.load(str(out))(x), m(x), atol=1e-5)


def test_factory_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "byo_models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(
        "from torch import nn\n"
        "def tiny():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"
        "NOT_CALLABLE = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(1)
    sd = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).state_dict()
    torch.save(sd, tmp_path / "tiny.pt")
    m = load_model("byo_models.nets:tiny", weights=tmp_path / "tiny.pt", dataset="mnist")
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(m(x), x.flatten(1) @ sd["1.weight"].T + sd["1.bias"], atol=1e-5)
    assert m.model_id.startswith("byo_models.nets:tiny@")
    with pytest.raises(ModelLoadError, match="cannot import"):
        load_model("no_such_pkg.mod:f")
    with pytest.raises(ModelLoadError, match="no attribute"):
        load_model("byo_models.nets:nothing")
    with pytest.raises(ModelLoadError, match="not callable"):
        load_model("byo_models.nets:NOT_CALLABLE")
    with pytest.raises(ModelLoadError, match="does not fit"):
        torch.save(get_arch("cw_mnist").build().state_dict(), tmp_path / "bad.pt")
        load_model("byo_models.nets:tiny", weights=tmp_path / "bad.pt")
    sys.modules.pop("byo_models.nets", None)
    sys.modules.pop("byo_models", None)


def test_bad_specs(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(ModelLoadError, match="not found"):
        load_model("not-a-model")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_model(junk)
    torch.save({"hello": "world"}, tmp_path / "dict.pt")
    with pytest.raises(ModelLoadError, match="not a TorchScript"):
        load_model(tmp_path / "dict.pt")


def test_list_models() -> None:
    rows = {r["name"]: r for r in list_models()}
    assert set(rows) == set(DEFAULT_MODELS)
    assert rows["mnist-default"]["dataset"] == "mnist" and rows["mnist-default"]["card"].endswith(".json")


@pytest.mark.realdata
def test_advertorch_lenet5(data_dir: Path) -> None:
    from workers.data import load_mnist

    path = data_dir / "models" / "mnist_lenet5_advtrained.pt"
    if not path.is_file():
        pytest.skip("advertorch model absent")
    m = load_model(path, arch="lenet5_advertorch")
    x, y = load_mnist(data_dir, "test")
    acc = (m.predict(images_to_tensor(x[:2000])).numpy() == y[:2000]).mean()
    assert acc > 0.97
    m2 = load_model("mnist-advertorch-lenet5", data_dir=data_dir)
    assert m2.model_id.split("@")[1] == m.model_id.split("@")[1]
