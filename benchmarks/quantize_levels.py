"""One CNN at every --quantize level, for tflite and onnx: size, max abs difference, cosine, SNR,
top-1 agreement and latency against float32, as `modelport convert` reports them.

The CNN is a small ResNet-style classifier (seeded weights, 0.3M parameters, 1x3x64x64 input).
Its calibration data are 60 smooth images (blurred noise, 0..1): int8 calibrates on 48 and is
judged on the 12 held out; fp32, fp16 and dynamic are judged on the same 12 images (--inputs).

Run:  .venv/bin/python benchmarks/quantize_levels.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEVELS = ("none", "fp16", "dynamic", "int8")

MODEL_SOURCE = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class SmallResNet(nn.Module):
    def __init__(self, classes=100):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.blocks = nn.Sequential(Block(32, 48, 2), Block(48, 64, 2), Block(64, 96, 2))
        self.head = nn.Linear(96, classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def build():
    torch.manual_seed(0)
    net = SmallResNet()
    with torch.no_grad():  # running statistics that are not the identity, as after training
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval(), (torch.rand(1, 3, 64, 64),)
'''


def smooth_images(count: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 1, (count, 3, 16, 16)).astype(np.float32)
    images = noise.repeat(4, axis=2).repeat(4, axis=3)  # 4x upsampled: smooth blobs, not white noise
    return images[:, None]  # one (1, 3, 64, 64) sample each


def main() -> int:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="modelport-quantize-levels-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "small_resnet.py").write_text(MODEL_SOURCE)
    images = smooth_images(60)
    np.savez(work / "calibration.npz", x=images)
    np.savez(work / "held_out.npz", x=images[48:])  # the same 12 samples int8 is judged on
    rows = []
    for level in LEVELS:
        report = work / f"report-{level}.json"
        command = [sys.executable, "-m", "modelport", "convert", f"{work / 'small_resnet.py'}:build",
                   "--to", "tflite,onnx", "-o", str(work / level), "--report", str(report)]
        command += (["--quantize", level, "--calibration-data", str(work / "calibration.npz")] if level == "int8"
                    else ["--inputs", str(work / "held_out.npz")] + (["--quantize", level] if level != "none" else []))
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode not in (0, 1):
            print(done.stderr, file=sys.stderr)
            return 1
        for target in json.loads(report.read_text())["targets"]:
            rows.append((level, target))
    print("| target | precision | status | size | vs fp32 | max abs | cosine | SNR dB | top-1 | p50 ms | fp32 p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    float_latency = {r[1]["target"]: (r[1].get("latency_ms") or {}).get("p50") for r in rows if r[0] == "none"}
    for level, target in sorted(rows, key=lambda r: (r[1]["target"], LEVELS.index(r[0]))):
        out = ((target.get("numeric") or {}).get("outputs") or [{}])[0]
        drift = target.get("drift") or {}
        size = target.get("size_bytes") or 0
        reduction = drift.get("size_reduction")
        fp32_p50 = (drift.get("fp32_latency_ms") or {}).get("p50") or float_latency.get(target["target"])
        print(f"| {target['target']} | {level} | {target['status']} | {size / 1024:.0f} KB | "
              f"{'-' if reduction is None else f'{100 * reduction:.0f}% smaller'} | "
              f"{_num(out.get('max_abs_diff'))} | {_num(out.get('cosine'), 6)} | {_num(out.get('snr_db'), 1)} | "
              f"{_pct(out.get('top1_agreement'))} | {_num((target.get('latency_ms') or {}).get('p50'), 3)} | "
              f"{_num(fp32_p50, 3)} |")
    print(f"\n(work folder: {work})")
    return 0


def _num(value, digits: int | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits is not None else f"{value:.2e}"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


if __name__ == "__main__":
    sys.exit(main())
