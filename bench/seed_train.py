#!/usr/bin/env python3
"""The seed benchmark's single-GPU training loop in PyTorch, as the baseline for the engine.

torchvision resnet18/resnet34 (num_classes=10), SGD(lr 0.1, momentum 0.9, weight_decay 5e-4),
CrossEntropyLoss, fp32 with PyTorch's default TF32 convolutions, on synthetic CIFAR-shaped data
that is already on the device (so only the model's step is timed). Prints per-step times and a
JSON summary line; with --fashion-mnist DIR it trains and evaluates on real Fashion-MNIST instead
(the recorded comparison run in docs/PERF.md).
"""
import argparse
import gzip
import json
import os
import statistics
import struct
import sys
import time

import torch
import torch.nn as nn
import torchvision


def make_model(name, width, stem, classes=10):
    if width == 64 and stem == "imagenet":
        return getattr(torchvision.models, name)(num_classes=classes)
    # A narrow torchvision ResNet (same module names and init), built as tests/fixtures/make_fixtures.py does.
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    from make_fixtures import NarrowResNet  # noqa: E402
    layers = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}[name]
    return NarrowResNet(layers, width, stem, classes)


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def fashion_mnist(folder, train):
    prefix = "train" if train else "t10k"
    def find(kind):
        for ext in (".gz", ""):
            p = os.path.join(folder, f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte{ext}")
            if os.path.exists(p):
                return p
        raise FileNotFoundError(f"no {prefix} {kind} file in {folder}")
    x = read_idx(find("images")).float().div(255)
    y = read_idx(find("labels")).long()
    x = nn.functional.pad(x, (2, 2, 2, 2)).unsqueeze(1).expand(-1, 3, -1, -1)
    return (x - 0.2860) / 0.3530, y


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="resnet34")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--stem", default="imagenet")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--fashion-mnist", default=None, help="folder with Fashion-MNIST IDX files: train and evaluate on it")
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = make_model(a.model, a.width, a.stem).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    result = {"torch": torch.__version__, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
              "model": a.model, "width": a.width, "stem": a.stem, "batch_size": a.batch_size,
              "tf32_conv": torch.backends.cudnn.allow_tf32}

    if a.fashion_mnist:
        xtr, ytr = fashion_mnist(a.fashion_mnist, True)
        xte, yte = fashion_mnist(a.fashion_mnist, False)
        if a.train_limit:
            xtr, ytr = xtr[:a.train_limit], ytr[:a.train_limit]
        g = torch.Generator().manual_seed(0)
        epochs = []
        for epoch in range(a.epochs):
            model.train()
            perm = torch.randperm(len(xtr), generator=g)
            steps = len(xtr) // a.batch_size
            t0 = time.perf_counter()
            tot = 0.0
            for s in range(steps):
                idx = perm[s * a.batch_size:(s + 1) * a.batch_size]
                x, y = xtr[idx].to(dev), ytr[idx].to(dev)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                tot += loss.item()
            sync()
            secs = time.perf_counter() - t0
            model.eval()
            correct = 0
            with torch.no_grad():
                for s in range(0, len(xte), 1000):
                    correct += (model(xte[s:s + 1000].to(dev)).argmax(1).cpu() == yte[s:s + 1000]).sum().item()
            epochs.append({"epoch": epoch + 1, "seconds": secs, "train_loss": tot / steps, "test_accuracy": correct / len(xte)})
            print(f"epoch {epoch + 1}  time {secs:.3f} s  train loss {tot / steps:.4f}  test acc {100 * correct / len(xte):.2f}%", flush=True)
        result["epochs"] = epochs
    else:
        x = torch.randn(a.batch_size, 3, 32, 32, device=dev)
        y = torch.randint(0, 10, (a.batch_size,), device=dev)
        model.train()
        times = []
        for i in range(a.warmup + a.steps):
            sync()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            sync()
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        result.update({"steps": a.steps, "median_step_seconds": med, "mean_step_seconds": statistics.mean(times),
                       "epoch_seconds_50k": med * (50000 // a.batch_size)})
        print(f"pytorch {a.model} batch {a.batch_size}: median step {1000 * med:.2f} ms over {a.steps} steps "
              f"(epoch of 50,000 images ~ {med * (50000 // a.batch_size):.2f} s)", flush=True)
    print("RESULT " + json.dumps(result), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
