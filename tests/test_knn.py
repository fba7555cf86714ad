"""DINO's weighted k-NN, every k in one pass, against a literal ``eval_knn.knn_classifier``; the
memory bank's feature cache; ``--knn-k`` lists, ``--knn-subset`` and the ``k`` column."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from simpool_bench import results as R
from simpool_bench.engine import EngineConfig
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.metrics.knn import KNNAccumulator, MemoryBank, knn_votes

from conftest import invoke_cli, said


@torch.no_grad()
def dino_knn_classifier(train_features, train_labels, test_features, test_labels, k, T, num_classes=1000, num_chunks=100):
    """facebookresearch/dino ``eval_knn.knn_classifier``, op for op (features L2-normalised by the
    caller, as DINO's extraction does). Also returns each image's top-1 prediction and hits, in
    order, and the class scores ``probs`` (collected beside DINO's sums; the ops are untouched).
    billpsomas/simpool's ``self_supervised/eval_knn.py`` has the same function with
    ``num_chunks=500`` as a keyword (its only difference): ``num_chunks`` gives it."""
    top1, top5, total = 0.0, 0.0, 0
    pred, hit1, hit5, scores = [], [], [], []
    train_features = train_features.t()
    num_test_images = test_labels.shape[0]
    imgs_per_chunk = num_test_images // num_chunks
    retrieval_one_hot = torch.zeros(k, num_classes).to(train_features.device)
    for idx in range(0, num_test_images, imgs_per_chunk):
        features = test_features[idx : min((idx + imgs_per_chunk), num_test_images), :]
        targets = test_labels[idx : min((idx + imgs_per_chunk), num_test_images)]
        batch_size = targets.shape[0]
        similarity = torch.mm(features, train_features)
        distances, indices = similarity.topk(k, largest=True, sorted=True)
        candidates = train_labels.view(1, -1).expand(batch_size, -1)
        retrieved_neighbors = torch.gather(candidates, 1, indices)
        retrieval_one_hot.resize_(batch_size * k, num_classes).zero_()
        retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
        distances_transform = distances.clone().div_(T).exp_()
        probs = torch.sum(torch.mul(retrieval_one_hot.view(batch_size, -1, num_classes), distances_transform.view(batch_size, -1, 1)), 1)
        _, predictions = probs.sort(1, True)
        correct = predictions.eq(targets.data.view(-1, 1))
        top1 = top1 + correct.narrow(1, 0, 1).sum().item()
        top5 = top5 + correct.narrow(1, 0, min(5, k)).sum().item()
        total += targets.size(0)
        scores.append(probs.clone())
        pred += predictions[:, 0].tolist()
        hit1 += correct.narrow(1, 0, 1).sum(1).tolist()
        hit5 += correct.narrow(1, 0, min(5, k)).sum(1).tolist()
    top1 = top1 * 100.0 / total
    top5 = top5 * 100.0 / total
    return top1, top5, np.array(pred), np.array(hit1, dtype=bool), np.array(hit5, dtype=bool), torch.cat(scores)


def _ours(train_f, train_y, test_f, test_y, ks, T, C, batch=7, seed=0, chunks=100):
    """Our accumulator fed in shuffled batches (dataset positions given), merged from three shards
    through state_dict round trips."""
    bank = MemoryBank.from_features(train_f, train_y, C)
    order = np.random.default_rng(seed).permutation(len(test_y))
    shards = [KNNAccumulator(bank, ks, T, chunks) for _ in range(3)]
    for j, s in enumerate(range(0, len(order), batch)):
        idx = order[s : s + batch]
        shards[j % 3].update(test_f[idx], test_y[idx], torch.from_numpy(idx))
    total = KNNAccumulator(bank, ks, T, chunks)
    for acc in shards:
        fresh = KNNAccumulator(bank, ks, T, chunks)
        fresh.load_state_dict(acc.state_dict())
        total.merge(fresh)
    return total


def _check_against_dino(train_f, train_y, test_f, test_y, ks, T, C, chunks=100):
    acc = _ours(train_f, train_y, test_f, test_y, ks, T, C, chunks=chunks)
    got = acc.compute()
    cols = acc.per_image_columns(len(test_y))
    tr, te = nn.functional.normalize(train_f, dim=1, p=2), nn.functional.normalize(test_f, dim=1, p=2)
    for k in ks:
        top1, top5, pred, hit1, hit5, probs = dino_knn_classifier(tr, train_y, te, test_y, k, T, num_chunks=chunks)  # num_classes=1000
        step = len(test_y) // chunks  # the peer's chunks (the matmul's rounding depends on their size)
        for c in range(0, len(test_y), step):  # the class scores of each chunk, bit for bit
            assert torch.equal(knn_votes(torch.mm(te[c : c + step], tr.t()), train_y, k, T, 1000), probs[c : c + step]), k
        assert (got["knn_top1"][k], got["knn_top5"][k]) == (top1, top5), k  # bit for bit
        assert np.array_equal(cols[f"knn_pred_k{k}"], pred) and np.array_equal(cols[f"knn_top1_k{k}"], hit1), k
        assert np.array_equal(cols[f"knn_top5_k{k}"], hit5), k
    return got


def test_every_k_in_one_pass_equals_dino_knn_classifier_per_k():
    g = torch.Generator().manual_seed(0)
    C, d = 9, 16
    centers = torch.randn(C, d, generator=g) * 2
    train_y = torch.randint(0, C, (300,), generator=g)
    test_y = torch.randint(0, C, (250,), generator=g)  # 250 // 100: chunks of 2 (a last chunk of 2 too)
    train_f = centers[train_y] + torch.randn(300, d, generator=g) * 1.5
    test_f = centers[test_y] + torch.randn(250, d, generator=g) * 2
    got = _check_against_dino(train_f, train_y, test_f, test_y, (1, 3, 10, 20, 100, 200), 0.07, C)
    assert len({got["knn_top1"][k] for k in (1, 10, 200)}) > 1  # the ks really differ


def test_simpools_eval_knn_chunks_of_n_over_500_are_its_bits(monkeypatch):
    """SimPool's own eval_knn.py (the published DINO-SimPool 20-NN figures) splits the test set into
    500 chunks, DINO's into 100: ``--knn-chunks 500`` gives its class scores and hits bit for bit.
    The chunk size changes the products' rounding here (rows of 2 against rows of 10), so it is
    part of the protocol, not a detail."""
    g = torch.Generator().manual_seed(3)
    C, d = 9, 48
    centers = torch.randn(C, d, generator=g)
    train_y = torch.randint(0, C, (400,), generator=g)
    test_y = torch.randint(0, C, (1000,), generator=g)  # DINO: chunks of 10; SimPool: chunks of 2
    train_f = centers[train_y] + torch.randn(400, d, generator=g) * 1.5
    test_f = centers[test_y] + torch.randn(1000, d, generator=g) * 2
    import simpool_bench.metrics.knn as knn_module

    seen: list[torch.Tensor] = []
    real_votes = knn_module.knn_votes
    monkeypatch.setattr(knn_module, "knn_votes", lambda sim, *a: seen.append(sim.clone()) or real_votes(sim, *a))
    got = _check_against_dino(train_f, train_y, test_f, test_y, (1, 10, 20, 200), 0.07, C, chunks=500)
    tr, te = nn.functional.normalize(train_f, dim=1, p=2), nn.functional.normalize(test_f, dim=1, p=2)
    by = {n: torch.cat([torch.mm(te[i : i + 1000 // n], tr.t()) for i in range(0, 1000, 1000 // n)]) for n in (100, 500)}
    assert not torch.equal(by[100], by[500])  # the chunking changes bits of the similarities
    ours = seen[::4]  # one similarity per chunk (shared by the 4 ks, in order)
    assert [len(c) for c in ours] == [2] * 500 and torch.equal(torch.cat(ours), by[500])
    assert got["knn_top1"][20] == dino_knn_classifier(tr, train_y, te, test_y, 20, 0.07, num_chunks=500)[0]


def test_ties_in_similarity_and_in_class_scores_break_as_dino():
    """Integer features: many exactly equal similarities (duplicate bank rows with other labels,
    queries equal to bank rows) and classes with equal or zero votes (the sort's order decides top-5)."""
    g = torch.Generator().manual_seed(1)
    C = 12
    base = torch.randint(-1, 2, (40, 6), generator=g).float()
    base[base.abs().sum(1) == 0, 0] = 1.0  # no zero vector
    train_f = torch.cat([base, base, base[:20]])  # every vector two or three times
    train_y = torch.randint(0, C, (100,), generator=g)
    test_f = torch.cat([base[torch.randint(0, 40, (90,), generator=g)], torch.randint(-1, 2, (47, 6), generator=g).float()])
    test_f[test_f.abs().sum(1) == 0, 1] = 1.0
    test_y = torch.randint(0, C, (137,), generator=g)  # 137 // 100: chunks of 1
    sims = nn.functional.normalize(test_f, dim=1) @ nn.functional.normalize(train_f, dim=1).t()
    assert any(len(torch.unique(r)) < 40 for r in sims)  # ties are there
    _check_against_dino(train_f, train_y, test_f, test_y, (1, 2, 4, 5, 7, 20, 60, 100), 0.07, C)


def test_fewer_classes_than_dinos_1000_vote_as_dinos_own_call():
    """DINO's ``eval_knn`` calls ``knn_classifier(train_features, train_labels, test_features,
    test_labels, k, args.temperature)``: ``num_classes`` is its default 1000 whatever the data
    set's class count. Its class scores are 1000 wide, so ``sort`` orders tied scores (classes
    with equal votes, and the zero-vote classes that fill the top-5 when fewer than 5 classes got
    votes) among 1000 columns: which tied class is the top-1, and whether a zero-vote target
    counts in the top-5, is what that call gives, not what a C-wide sort gives. Checked on 12
    and 3 classes (k from 1 to 20, ties in similarity and in class scores)."""
    g = torch.Generator().manual_seed(1)
    base = torch.randint(-1, 2, (40, 6), generator=g).float()
    base[base.abs().sum(1) == 0, 0] = 1.0
    train_f = torch.cat([base, base, base[:20]])
    test_f = torch.cat([base[torch.randint(0, 40, (90,), generator=g)], torch.randint(-1, 2, (47, 6), generator=g).float()])
    test_f[test_f.abs().sum(1) == 0, 1] = 1.0
    tr, te = nn.functional.normalize(train_f, dim=1, p=2), nn.functional.normalize(test_f, dim=1, p=2)
    train_y, test_y = torch.randint(0, 12, (100,), generator=g), torch.randint(0, 12, (137,), generator=g)
    ks = (1, 2, 3, 4, 5, 7, 10, 20)
    for C, (ty, sy) in {12: (train_y, test_y), 3: (train_y % 3, test_y % 3)}.items():
        acc = KNNAccumulator(MemoryBank.from_features(train_f, ty, C), ks, 0.07)
        acc.update(test_f, sy)
        got, cols = acc.compute(), acc.per_image_columns(len(sy))
        for k in ks:
            top1, top5, pred, hit1, hit5, _ = dino_knn_classifier(tr, ty, te, sy, k, 0.07)  # DINO's call: num_classes=1000
            assert (got["knn_top1"][k], got["knn_top5"][k]) == (top1, top5), (C, k)
            assert np.array_equal(cols[f"knn_pred_k{k}"], pred) and np.array_equal(cols[f"knn_top1_k{k}"], hit1), (C, k)
            assert np.array_equal(cols[f"knn_top5_k{k}"], hit5), (C, k)


def test_misses_count_as_wrong_and_k_beyond_the_bank_is_an_error():
    bank = MemoryBank.from_features(torch.eye(4), torch.tensor([0, 1, 2, 3]), 4)
    acc = KNNAccumulator(bank, (1, 2), 0.07)
    acc.update(torch.eye(4)[:2], torch.tensor([0, 1]), torch.tensor([3, 5]))
    acc.add_misses(2)
    assert acc.compute() == {"knn_top1": {1: 50.0, 2: 50.0}, "knn_top5": {1: 50.0, 2: 50.0}}
    cols = acc.per_image_columns(6)
    assert cols["knn_pred_k1"].tolist() == [-1, -1, -1, 0, -1, 1] and cols["knn_top1_k2"].sum() == 2
    with pytest.raises(SimpoolBenchError, match="--knn-k 5: the memory bank has only 4 images"):
        KNNAccumulator(bank, (2, 5))


# ----------------------------------------------------------------------------------- bank cache
def test_the_memory_bank_holds_the_decodable_images_only_each_once_in_record_order(tmp_path):
    """``collect_features``: one row per image that decoded, in record order, each the model's own
    pooled features of that image with its label; an image that does not decode is left out (never
    its zero placeholder's features)."""
    from types import SimpleNamespace

    from PIL import Image

    from simpool_bench.data.records import Record
    from simpool_bench.tasks.classification import collect_features

    records = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        if i != 2:  # image 2 is missing: it does not decode
            Image.new("RGB", (3, 2), (10 * i + 1, 2 * i, 7)).save(path)
        records.append(Record(f"{i}", path, label=i % 2, width=3, height=2))

    class Pool(nn.Module):
        num_features = 3

        def forward(self, x):
            return SimpleNamespace(features=x.mean(dim=(2, 3)) + 1.0)  # never zero, not even for a zero image

    def transform(img):
        return torch.tensor(np.array(img), dtype=torch.float32).permute(2, 0, 1)

    config = EngineConfig(device="cpu", batch_size=2, shard_size=2, progress=False)
    with pytest.warns(RuntimeWarning, match="2.png"):
        feats, labels = collect_features(Pool(), records, transform, config)
    want = torch.tensor([[10.0 * i + 2, 2.0 * i + 1, 8.0] for i in (0, 1, 3, 4)])
    assert torch.equal(feats, want) and labels.tolist() == [0, 1, 1, 0]

    class NaNAt3(Pool):  # image 3 (red 31) gives NaN features
        def forward(self, x):
            out = super().forward(x)
            out.features[x[:, 0, 0, 0] == 31.0] = float("nan")
            return out

    with pytest.warns(RuntimeWarning, match="2.png"), pytest.raises(SimpoolBenchError, match="k-NN memory-bank features"):
        collect_features(NaNAt3(), records, transform, config)
    with pytest.warns(RuntimeWarning, match="2.png"):  # allowed: left out of the bank
        feats, labels = collect_features(NaNAt3(), records, transform, replace(config, allow_nonfinite=True))
    assert torch.equal(feats, want[[0, 1, 3]]) and labels.tolist() == [0, 1, 0]


def test_the_bank_key_changes_with_max_pixels(monkeypatch):
    """--max-pixels decides which bank images decode: a bank cached under one limit is not the
    bank of another (another key)."""
    from pathlib import Path

    from simpool_bench import runkey
    from simpool_bench.data.records import Record
    from simpool_bench.tasks import knn_bank

    monkeypatch.setattr(runkey, "code_version", lambda: "this code")  # (its timm import costs seconds alone)
    records = [Record("a", Path("/nonexistent/a.jpg"), 0)]
    keys = {knn_bank.bank_key(nn.Identity(), records, None, EngineConfig(device="cpu", max_pixels=m)) for m in (None, 1000, 1000, 2000)}
    assert len(keys) == 3


def test_a_cached_bank_is_read_only_under_its_own_key_and_whole(tmp_path):
    """``knn_bank.load_bank``: the features stored under another key (a file copied or renamed),
    or with fewer positions than feature rows, are not this run's bank (None: extracted again)."""
    from simpool_bench.tasks import knn_bank

    index, feats = torch.tensor([0, 2, 3]), torch.rand(3, 4)
    path = knn_bank.bank_path(tmp_path, "key-a")
    knn_bank.save_bank(path, "key-a", index, feats)
    got = knn_bank.load_bank(path, "key-a")
    assert got is not None and torch.equal(got[0], index) and torch.equal(got[1], feats)
    knn_bank.save_bank(path, "key-b", index, feats)
    assert knn_bank.load_bank(path, "key-a") is None
    knn_bank.save_bank(path, "key-a", index[:2], feats)
    assert knn_bank.load_bank(path, "key-a") is None


@pytest.fixture(scope="module")
def tiny_knn(tmp_path_factory, make_image_folder, make_tiny_checkpoint):
    root = tmp_path_factory.mktemp("knn")
    return {
        "test": make_image_folder(root / "val", counts=(3, 3, 2), seed=1),
        "train": make_image_folder(root / "train", counts=(3, 2, 3), seed=2),
        "ckpt": make_tiny_checkpoint(root / "tiny.pth.tar")[0],
        "root": root,
    }


def test_a_rerun_with_other_k_reuses_the_cached_bank(tiny_knn, tmp_path, capsys):
    from simpool_bench import api, tasks
    from simpool_bench.readers import read_classification_data
    from simpool_bench.transforms import classification_transform

    model, _ = api.load_model(api.ModelOptions(checkpoint=tiny_knn["ckpt"]))
    seen = []
    model.register_forward_hook(lambda m, inp, out: seen.append(int(inp[0].shape[0])))
    test = read_classification_data(tiny_knn["test"]).records
    bank = read_classification_data(tiny_knn["train"]).records
    transform = classification_transform(model.data_config)
    config = EngineConfig(device="cpu", batch_size=3, progress=False)

    def run(ks, cache):
        seen.clear()
        out = tasks.classify(model, test, transform, config, dataset="t", knn_train=bank, knn_k=ks, bank_cache=cache)
        return {(r["metric"], r["k"]): r["value"] for r in out.rows}, sum(seen), out

    first, n_first, _ = run((2, 3), tmp_path)
    assert n_first == len(test) + len(bank) and "reusing" not in capsys.readouterr().err
    assert len(list((tmp_path / "knn_bank").glob("*.pt"))) == 1
    again, n_again, out = run((1, 3, 8), tmp_path)
    assert n_again == len(test)  # the bank was not extracted again
    assert f"note: reusing the k-NN memory bank's features ({len(bank)} images)" in " ".join(capsys.readouterr().err.split())
    fresh, _, _ = run((1, 3, 8), None)  # no cache: extracted again, same numbers bit for bit
    assert again == fresh and again[("knn_top1", 3)] == first[("knn_top1", 3)]
    cols = out.extras["per_image_columns"]
    for k in (1, 3, 8):  # per-image hits over the images == the table's value
        assert cols[f"knn_top1_k{k}"].sum() * 100.0 / len(test) == again[("knn_top1", k)]
        assert len(cols[f"knn_pred_k{k}"]) == len(test)
    # a damaged cache file is extracted again, not trusted
    (f,) = (tmp_path / "knn_bank").glob("*.pt")
    f.write_bytes(f.read_bytes()[:-5] + b"xxxxx")
    _, n_damaged, _ = run((2,), tmp_path)
    assert n_damaged == len(test) + len(bank)


def _knn_rows(table):
    sel = table[table["metric"].str.startswith("knn_")]
    return {(m, int(k)): v for m, k, v in zip(sel["metric"], sel["k"], sel["value"])}


def test_cli_knn_k_list_subset_and_errors(tiny_knn, tmp_path):
    d = tiny_knn
    base = ["classify", "--data", d["test"], "--knn-train", d["train"], "--checkpoint", d["ckpt"], "--device", "cpu", "-j", "0"]
    out = tmp_path / "run"
    res = invoke_cli(*base, "--knn-k", "2,3", "--out", out)
    assert res.exit_code == 0, res.output
    assert f"wrote {out}/: per_image.parquet, results.csv, results.json, results.parquet" in " ".join(res.stdout.split())
    first = _knn_rows(R.read_run(out))
    assert set(first) == {(m, k) for m in ("knn_top1", "knn_top5") for k in (2, 3)}
    res = invoke_cli(*base, "--knn-k", "3,5", "--out", out)
    assert res.exit_code == 0 and "note: reusing the k-NN memory bank's features (8 images)" in said(res)
    second = _knn_rows(R.read_run(out))
    assert set(second) == {(m, k) for m in ("knn_top1", "knn_top5") for k in (3, 5)} and second[("knn_top1", 3)] == first[("knn_top1", 3)]
    quiet = invoke_cli("-q", *base, "--knn-k", "3,5", "--out", out)  # -q: the bank is reused without the note
    assert quiet.exit_code == 0 and "note:" not in said(quiet) and _knn_rows(R.read_run(out)) == second
    md = R.to_markdown(R.read_run(out))
    assert "| IoU | k | value |" in md and "| knn_top1 |  | 5 |" in md

    # --knn-subset 1: the first image of every class (sorted file order) == a bank of just those
    only = tmp_path / "first"
    for cls in sorted(p.name for p in d["train"].iterdir()):
        (only / cls).mkdir(parents=True)
        shutil.copy2(sorted((d["train"] / cls).iterdir())[0], only / cls)
    res = invoke_cli(*base, "--knn-k", "1,3", "--knn-subset", "1", "--out", tmp_path / "sub")
    assert res.exit_code == 0, res.output
    sub = _knn_rows(R.read_run(tmp_path / "sub"))
    base_only = [a if a != d["train"] else only for a in base]
    assert invoke_cli(*base_only, "--knn-k", "1,3", "--out", tmp_path / "only").exit_code == 0
    assert sub == _knn_rows(R.read_run(tmp_path / "only"))

    for args, msg in (
        (("--knn-k", "1,5", "--knn-subset", "1"), "error: --knn-k 5: the k-NN train split has only 3 images"),
        (("--knn-k", "2,x"), "error: --knn-k '2,x': expected distinct positive integers"),
        (("--knn-k", "3,3"), "error: --knn-k '3,3': expected distinct positive integers"),
        (("--knn-subset", "3"), "error: --knn-subset 3: subset per class: class 1 has 2 images"),
    ):
        res = invoke_cli(*base, *args, "--no-resume")
        assert res.exit_code == 2 and msg in said(res), (args, res.output)
        assert "Traceback" not in res.output
    res = invoke_cli("classify", "--data", d["test"], "--checkpoint", d["ckpt"], "--device", "cpu", "--knn-subset", "1")
    assert res.exit_code == 2 and "error: --knn-subset picks part of the k-NN memory bank: give --knn-train DIR too" in said(res)


def test_cli_knn_chunks_is_recorded_reuses_the_bank_and_needs_a_bank(tiny_knn, tmp_path):
    """``--knn-chunks 500`` (SimPool's eval_knn.py) lands in the protocol record, which ``check``
    calls a change against DINO's 100; a table from before the parameter was recorded reads as 100
    with a bank. Without ``--knn-train`` the flag is an error, as --knn-k is."""
    import json

    from simpool_bench.results.protocols import parameter_changes

    d = tiny_knn
    base = [
        "classify",
        "--data",
        d["test"],
        "--knn-train",
        d["train"],
        "--checkpoint",
        d["ckpt"],
        "--device",
        "cpu",
        "-j",
        "0",
        "--knn-k",
        "2",
    ]
    out = tmp_path / "run"
    assert invoke_cli(*base, "--out", out).exit_code == 0
    dino = R.read_run(out)
    res = invoke_cli(*base, "--knn-chunks", "500", "--out", out)
    assert res.exit_code == 0 and "note: reusing the k-NN memory bank's features" in said(res)  # the features do not depend on it
    simpool = R.read_run(out)
    assert {json.loads(p)["knn_chunks"] for p in dino["protocol"]} == {100} and {
        json.loads(p)["knn_chunks"] for p in simpool["protocol"]
    } == {500}
    assert [(c.name, c.run, c.baseline) for c in parameter_changes(simpool, dino)] == [("knn_chunks", "500", "100")]
    old = dino.assign(protocol=[json.dumps({k: v for k, v in json.loads(p).items() if k != "knn_chunks"}) for p in dino["protocol"]])
    assert parameter_changes(dino, old) == [] and [c.name for c in parameter_changes(simpool, old)] == ["knn_chunks"]
    res = invoke_cli("classify", "--data", d["test"], "--checkpoint", d["ckpt"], "--device", "cpu", "--knn-chunks", "500")
    assert res.exit_code == 2 and "--knn-chunks" in said(res) and "only the k-NN classifier uses it" in said(res), res.output
    res = invoke_cli(*base, "--knn-chunks", "0", "--no-resume")
    assert res.exit_code == 2 and "Traceback" not in res.output


# ----------------------------------------------------------------------------------- the k column
def _knn_table(values: dict[int, float]):
    prov = R.Provenance(model="vit_small_patch16_224", pool="cls", schema_version=R.SCHEMA_VERSION)
    rows = [{"dataset": "imagenet", "split": "val", "metric": "knn_top1", "k": k, "value": v} for k, v in values.items()]
    rows.append({"dataset": "imagenet", "split": "val", "metric": "top1", "value": 70.0})
    return R.make_table(rows, prov)


def test_k_column_keys_rows_in_check_and_compare(tmp_path):
    base = _knn_table({10: 70.0, 20: 71.0, 200: 69.0})
    run = _knn_table({10: 70.0, 20: 70.5, 200: 69.0})
    rep = R.check(run, base)
    assert [r.key for r in rep.by_status("regressed")] == ["imagenet/val knn_top1@20"]
    assert R.check(run, base, tolerances={"knn_top1@20": 0.6}).passed
    assert not R.check(run, base, tolerances={"knn_top1@200": 0.6}).passed  # k 200: its own key, valid
    assert "knn_top1@20" in rep.markdown
    cmp = R.compare([base, run], labels=["a", "b"])
    assert [c[2] for c in cmp.columns if c[3] == "value"] == ["top1", "knn_top1@10", "knn_top1@20", "knn_top1@200"]
    with pytest.raises(SimpoolBenchError, match="duplicate rows .* k=20"):
        R.make_table(
            [{"dataset": "d", "split": "s", "metric": "knn_top1", "k": 20, "value": v} for v in (1.0, 2.0)],
            R.Provenance(model="m", pool="p"),
        )


def test_a_schema_2_table_is_read_with_k_empty(tmp_path):
    df = _knn_table({20: 70.0})
    R.write_run(df, tmp_path / "new")
    old = df.drop(columns=["k"]).assign(schema_version=2)
    old = old[old["metric"] == "top1"]
    old.to_csv(tmp_path / "old.csv", index=False)
    back = R.read_run(tmp_path / "old.csv")
    assert back["k"].isna().all() and list(back.columns[:6]) == list(R.METRIC_COLUMNS) and int(back["schema_version"][0]) == 2
    assert R.check(R.read_run(tmp_path / "new"), tmp_path / "old.csv").passed  # a schema-2 baseline gates a schema-3 run


def test_a_k_less_knn_baseline_row_is_missing_and_says_why(tmp_path):
    """A k-NN row of a schema-2 baseline has no k: check guesses none (k-NN accuracy moves with k),
    reports it missing, and names the run's k so the user can fix the baseline."""
    run = _knn_table({10: 70.0, 20: 71.0})
    R.write_run(run, tmp_path / "new")
    old = run.drop(columns=["k"]).assign(schema_version=2)
    old = old[old["metric"] == "top1"]
    old = pd.concat([old, old.assign(metric="knn_top1", value=71.0)], ignore_index=True)  # one k-NN row, no k
    old.to_csv(tmp_path / "old.csv", index=False)
    rep = R.check(R.read_run(tmp_path / "new"), tmp_path / "old.csv")
    assert not rep.passed
    (miss,) = rep.by_status("missing")
    assert (miss.metric, miss.k) == ("knn_top1", None)
    assert "the baseline row has no k (a schema-2 or hand-made table) and the run has knn_top1 at k = 10, 20" in miss.note
    assert miss.note in rep.markdown
    # a metric the run lacks at every k keeps the plain reason
    other = R.check(_knn_table({}), tmp_path / "old.csv").by_status("missing")
    assert [r.note for r in other] == ["absent from the run"]


@pytest.mark.parametrize(
    "change, first",
    [
        (lambda bank: (bank / "cat").rename(bank / "cow"), "label 2 is 'cow' in the bank, 'cat' in --data"),
        (lambda bank: shutil.copytree(bank / "bee", bank / "ape"), "label 1 is 'ape' in the bank, 'bee' in --data"),
        (lambda bank: shutil.rmtree(bank / "bee"), "label 1 is 'cat' in the bank, 'bee' in --data"),
    ],
)
def test_a_bank_whose_class_folders_are_not_the_datas_is_refused(tiny_knn, tmp_path, change, first):
    """k-NN votes by label index, the index of a class folder in sorted order: a bank with a folder
    renamed, added or missing matched other classes by position and gave a number, silently."""
    bank = tmp_path / "bank"
    shutil.copytree(tiny_knn["train"], bank)
    change(bank)
    res = invoke_cli(
        "classify",
        "--data",
        tiny_knn["test"],
        "--knn-train",
        bank,
        "--checkpoint",
        tiny_knn["ckpt"],
        "--knn-k",
        "2",
        "--device",
        "cpu",
        "-j",
        "0",
    )
    assert res.exit_code == 2, res.output
    ours = ["ant", "bee", "cat"]
    theirs = sorted(p.name for p in bank.iterdir())
    assert res.output.strip().splitlines() == [
        f"error: --knn-train {bank}: its class folders are not those of --data {tiny_knn['test']} ({len(theirs)} vs 3 classes; "
        f"first difference: {first}); k-NN compares labels by class index, so both need the same classes"
    ]
    assert ours != theirs


def test_defaults_are_dinos_eval_knn_defaults():
    """With no k and no temperature given, the accumulator and the protocol the commands take their
    defaults from (``registry.DINO_KNN``) are DINO ``eval_knn.py``'s argparse defaults,
    ``--nb_knn 10 20 100 200`` and ``--temperature 0.07``: every number equals the literal
    classifier's at those values, and on this data another temperature changes predictions."""
    from simpool_bench.registry import DINO_KNN

    g = torch.Generator().manual_seed(2)
    C, d = 9, 16
    centers = torch.randn(C, d, generator=g) * 1.5
    train_y = torch.randint(0, C, (300,), generator=g)
    test_y = torch.randint(0, C, (200,), generator=g)
    train_f = centers[train_y] + torch.randn(300, d, generator=g) * 2
    test_f = centers[test_y] + torch.randn(200, d, generator=g) * 2
    tr, te = nn.functional.normalize(train_f, dim=1, p=2), nn.functional.normalize(test_f, dim=1, p=2)
    bank = MemoryBank.from_features(train_f, train_y, C)
    for acc in (KNNAccumulator(bank), KNNAccumulator(bank, DINO_KNN.ks, DINO_KNN.temperature)):
        acc.update(test_f, test_y)
        got, cols = acc.compute(), acc.per_image_columns(len(test_y))
        assert sorted(got["knn_top1"]) == [10, 20, 100, 200]
        for k in (10, 20, 100, 200):
            top1, top5, pred, _, _, _ = dino_knn_classifier(tr, train_y, te, test_y, k, 0.07)
            assert (got["knn_top1"][k], got["knn_top5"][k]) == (top1, top5) and np.array_equal(cols[f"knn_pred_k{k}"], pred), k
    other = [dino_knn_classifier(tr, train_y, te, test_y, k, T)[2] for T in (0.07, 0.1) for k in (200,)]
    assert not np.array_equal(*other)  # the temperature matters here


def test_top5_below_five_neighbours_counts_only_the_k_voted_ranks_as_dino():
    """DINO: ``correct.narrow(1, 0, min(5, k))`` ("top5 does not make sense if k < 5"): with k = 1
    the top-5 hit is the top-1 hit. The 1000-wide class scores put zero-vote classes at ranks 2-5
    in ``sort``'s tie order (on CPU e.g. 663, 671, 670, ...); targets among those classes are a
    top-5 hit of a 5-wide narrow, and not DINO's."""
    g = torch.Generator().manual_seed(3)
    bank = MemoryBank.from_features(torch.randn(6, 8, generator=g), torch.tensor([3, 500, 7, 3, 500, 7]), 1000)
    test_f = torch.randn(200, 8, generator=g)
    tr, te = nn.functional.normalize(bank.features, dim=1), nn.functional.normalize(test_f, dim=1)
    probe = dino_knn_classifier(tr, bank.labels, te, torch.zeros(200, dtype=torch.long), 1, 0.07)[5]
    ranks = probe.sort(1, True)[1]
    test_y = ranks[torch.arange(200), 1 + torch.arange(200) % 4]  # each target at rank 2..5, zero votes
    acc = KNNAccumulator(bank, (1, 2), 0.07)
    acc.update(test_f, test_y)
    got = acc.compute()
    for k in (1, 2):
        top1, top5, *_ = dino_knn_classifier(tr, bank.labels, te, test_y, k, 0.07)
        assert (got["knn_top1"][k], got["knn_top5"][k]) == (top1, top5), k
    assert got["knn_top5"][1] == got["knn_top1"][1] == 0.0
    assert (ranks[:, :5] == test_y[:, None]).any(dim=1).all()  # a 5-wide narrow would count every image


def test_a_knn_run_records_its_images_and_its_bank_apart(tiny_knn, tmp_path):
    # README: data_sha256 is of the evaluated images in every run; a k-NN run's knn_data_sha256 of those
    # images, then its bank (records_sha256's two groups). A k-NN run's top1 beside a plain run's on the
    # same images is then the same data for compare and check (schema 4 called it other data); its
    # k-NN rows beside those of a run on another bank are not. check gates the bank by its data, not
    # by its folder's path, and a plain baseline gates no k-NN parameter
    from simpool_bench.data.records import records_sha256
    from simpool_bench.readers import read_classification_data

    d = tiny_knn
    other_bank, moved_bank = tmp_path / "other_bank", tmp_path / "moved_bank"
    shutil.copytree(d["train"], other_bank)
    shutil.copytree(d["train"], moved_bank)  # the same bank in another folder (another machine)
    sorted(p for p in other_bank.rglob("*") if p.is_file())[0].unlink()  # one image fewer (class folders kept)
    common = ("--data", d["test"], "--checkpoint", d["ckpt"], "--device", "cpu", "-j", "0")
    runs = {}
    for name, bank in (("plain", None), ("knn", d["train"]), ("other", other_bank), ("moved", moved_bank)):
        knn = () if bank is None else ("--knn-train", bank, "--knn-k", "2")
        res = invoke_cli("classify", *common, *knn, "--out", tmp_path / name)
        assert res.exit_code == 0, res.output
        runs[name] = R.read_run(tmp_path / name)
    test = read_classification_data(d["test"]).records
    banks = {name: read_classification_data(folder).records for name, folder in (("knn", d["train"]), ("other", other_bank))}
    banks["moved"] = banks["knn"]
    assert len(banks["other"]) == len(banks["knn"]) - 1
    for name, table in runs.items():
        assert set(table["data_sha256"]) == {records_sha256(test)}, name
        knn_data = {None} if name == "plain" else {records_sha256(test, banks[name])}
        assert {None if pd.isna(v) else v for v in table["knn_data_sha256"]} == knn_data, name
    assert "top1" in set(runs["plain"]["metric"]) & set(runs["knn"]["metric"])  # a column both runs fill

    assert R.compare([runs["plain"], runs["knn"]]).attrs["mixed_data"] == []
    rep = R.check(runs["knn"], runs["plain"])
    assert rep.passed and [r.metric for r in rep.rows if r.status != "ok"] == []
    assert any(n.startswith("k-NN parameters not gated (`") and "knn_train: run " in n for n in rep.notes), rep.notes

    rep = R.check(runs["moved"], runs["knn"])
    assert rep.passed and [r.metric for r in rep.rows if r.status != "ok"] == []
    assert any(n.startswith("k-NN bank at another path (`") and str(moved_bank) in n for n in rep.notes), rep.notes

    ds = f"{runs['knn']['dataset'].iat[0]}/{runs['knn']['split'].iat[0]}"
    (line,) = R.compare([tmp_path / "knn", tmp_path / "other"]).attrs["mixed_data"]
    digests = [records_sha256(test, banks[name])[:12] for name in ("knn", "other")]
    assert line.startswith(f"{ds}: the runs are of different data (knn_data_sha256 {digests[0]} in {tmp_path / 'knn'}, run_id ")
    assert f"; knn_data_sha256 {digests[1]} in {tmp_path / 'other'}, run_id " in line
    assert line.endswith("): their values in knn_top1@2, knn_top5@2 are not comparable")
    rep = R.check(runs["other"], runs["knn"])
    assert [r.metric for r in rep.rows if r.status in ("provenance-mismatch", "protocol-mismatch")] == ["provenance:knn_data_sha256"]
    assert not rep.passed
    # the same command on another bank into the k-NN run's folder: another run, whose results replace it
    res = invoke_cli("classify", *common, "--knn-train", other_bank, "--knn-k", "2", "--out", tmp_path / "knn")
    assert res.exit_code == 0, res.output
    assert f"held the results of another run (knn_data_sha256 {digests[0]} -> {digests[1]}); they are replaced" in said(res)


def test_the_data_digests_are_of_the_folders_as_read_whether_a_head_relabels_them_or_not(tmp_path, make_tiny_checkpoint):
    # a head's logits are scored in timm's natural class order (c9 before c10), which relabels the
    # records; a headless backbone keeps the folders' sorted order (c10 before c9). Both runs read the
    # same folders: one data_sha256 and one knn_data_sha256, of the records as read
    from PIL import Image

    from simpool_bench.data.records import records_sha256
    from simpool_bench.readers import read_classification_data

    for root in ("val", "bank"):
        for name in ("c10", "c9"):
            (tmp_path / root / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40 + i, 36), (120, 30, 200)).save(tmp_path / root / name / f"{i}.jpg")
    tables = {}
    for name, classes in (("head", 2), ("backbone", 0)):
        ckpt = make_tiny_checkpoint(tmp_path / f"{name}.pth.tar", num_classes=classes)[0]
        res = invoke_cli("classify", "--data", tmp_path / "val", "--knn-train", tmp_path / "bank", "--knn-k", "2", "--checkpoint", ckpt, "--num-classes", classes, "--device", "cpu", "-j", "0", "--out", tmp_path / name)  # fmt: skip
        assert res.exit_code == 0, res.output
        tables[name] = R.read_run(tmp_path / name)
    assert "top1" in set(tables["head"]["metric"]) and "top1" not in set(tables["backbone"]["metric"])
    val, bank = read_classification_data(tmp_path / "val").records, read_classification_data(tmp_path / "bank").records
    assert [r.label for r in val] == [0, 0, 1, 1] and val[0].path.parent.name == "c10"  # as read: sorted order
    for table in tables.values():
        assert set(table["data_sha256"]) == {records_sha256(val)} and set(table["knn_data_sha256"]) == {records_sha256(val, bank)}
    assert R.compare([tables["head"], tables["backbone"]]).attrs["mixed_data"] == []
