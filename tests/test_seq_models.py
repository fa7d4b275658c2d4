"""SASRec and GRU4Rec: plain-torch references, causality, padding, scoring, histories, losses,
validation, checkpoints, and history exclusion in the full-ranking evaluation."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advrec import kernels
from advrec.data import PAD, Interactions, exclusion_csr, leave_one_out, user_sequences
from advrec.evaluation import evaluate
from advrec.models import GRU4Rec, SASRec
from advrec.training import load_checkpoint, save_checkpoint

N_USERS, N_ITEMS, DIM, T = 7, 20, 8, 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(kind, max_len=T, seed=0, dropout=0.0, loss="bce", n_items=N_ITEMS, n_users=N_USERS, dim=DIM):
    if kind == "sasrec":
        return SASRec(n_users, n_items, dim=dim, max_len=max_len, n_blocks=2, dropout=dropout,
                      loss=loss, seed=seed).eval()
    return GRU4Rec(n_users, n_items, dim=dim, max_len=max_len, dropout=dropout, loss=loss, seed=seed).eval()


KINDS = ["sasrec", "gru4rec"]


def random_seqs(rng, b, max_len, n_items=N_ITEMS, min_len=0):
    """Right-aligned rows of random lengths (including empty and full rows)."""
    out = np.full((b, max_len), PAD, dtype=np.int64)
    lengths = rng.integers(min_len, max_len + 1, b)
    lengths[0], lengths[-1] = max_len, min_len
    for r, n in enumerate(lengths):
        if n:
            out[r, max_len - n:] = rng.integers(0, n_items, n)
    return torch.from_numpy(out)


# --- plain-torch references ----------------------------------------------------------------------

def layer_norm(x, ln):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def linear(x, lin):
    return x @ lin.weight.t() + lin.bias


def sasrec_reference(model, items):
    """SASRec over the items alone (no padding at all), at the positions right alignment gives them."""
    L, d = len(items), model.dim
    x = model.item[items] * math.sqrt(d) + model.position[model.max_len - L:]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    for blk in model.blocks:
        q = layer_norm(x, blk.norm_q)
        s = linear(q, blk.q) @ linear(x, blk.k).t() / math.sqrt(d)
        p = torch.softmax(s.masked_fill(~causal, float("-inf")), dim=-1)
        x = q + linear(p @ linear(x, blk.v), blk.out)
        h = layer_norm(x, blk.norm_ff)
        x = h + linear(torch.relu(linear(h, blk.ff1)), blk.ff2)
    return layer_norm(x, model.norm)


def gru_reference(model, items):
    """The GRU equations step by step from a zero state over the items alone."""
    g, d = model.gru, model.dim
    h, out = torch.zeros(d), []
    for i in items:
        gi = g.weight_ih_l0 @ model.item[i] + g.bias_ih_l0
        gh = g.weight_hh_l0 @ h + g.bias_hh_l0
        r = torch.sigmoid(gi[:d] + gh[:d])
        z = torch.sigmoid(gi[d:2 * d] + gh[d:2 * d])
        n = torch.tanh(gi[2 * d:] + r * gh[2 * d:])
        h = (1 - z) * n + z * h
        out.append(h)
    return torch.stack(out)


REFERENCE = {"sasrec": sasrec_reference, "gru4rec": gru_reference}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_encode_matches_reference_on_items_alone(kind, seed):
    """Item states equal the model run on the items alone: padding content can never matter."""
    model = make(kind, max_len=7, seed=seed)
    seqs = random_seqs(np.random.default_rng(seed), 9, 7)
    with torch.no_grad():
        states = model.encode(seqs)
        for r in range(len(seqs)):
            items = seqs[r][seqs[r] != PAD]
            pad = seqs[r] == PAD
            assert torch.equal(states[r][pad], torch.zeros_like(states[r][pad]))
            if len(items):
                torch.testing.assert_close(states[r][~pad], REFERENCE[kind](model, items), atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(model.user_embedding(seqs), states[:, -1])


# --- causality ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_a_later_item_never_changes_an_earlier_state(kind, seed):
    rng = np.random.default_rng(100 + seed)
    model = make(kind, max_len=T, seed=seed)
    seqs = random_seqs(rng, 8, T, min_len=1)
    with torch.no_grad():
        base = model.encode(seqs)
        for c in range(T):
            rows = torch.nonzero(seqs[:, c] != PAD).flatten()
            assert len(rows)
            changed = seqs.clone()
            changed[rows, c] = (changed[rows, c] + torch.from_numpy(rng.integers(1, N_ITEMS, len(rows)))) % N_ITEMS
            out = model.encode(changed)
            assert torch.equal(out[:, :c], base[:, :c]), f"column {c} leaked into earlier columns"
            for r in rows:
                assert not torch.equal(out[r, c:], base[r, c:]), f"row {int(r)}: column {c} changed nothing"


# --- padding --------------------------------------------------------------------------------------

def test_gru4rec_states_do_not_depend_on_how_much_padding_precedes():
    rng = np.random.default_rng(3)
    short, long = make("gru4rec", max_len=6, seed=5), make("gru4rec", max_len=10, seed=5)
    assert torch.equal(short.item, long.item)
    seqs6 = random_seqs(rng, 10, 6)
    seqs10 = torch.cat([torch.full((10, 4), PAD), seqs6], dim=1)
    with torch.no_grad():
        a, b = short.encode(seqs6), long.encode(seqs10)
    torch.testing.assert_close(b[:, 4:], a, atol=1e-6, rtol=1e-6)
    assert torch.equal(b[:, :4], torch.zeros_like(b[:, :4]))


@pytest.mark.parametrize("kind", KINDS)
def test_embeddings_and_seq_delta_are_ignored_at_padding(kind):
    rng = np.random.default_rng(4)
    model = make(kind)
    seqs = random_seqs(rng, 8, T)
    pad = (seqs == PAD).unsqueeze(-1)
    with torch.no_grad():
        base = model.encode(seqs)
        emb = model.sequence_embeddings(seqs)
        assert torch.equal(emb * pad, torch.zeros_like(emb))
        junk = torch.randn(emb.shape) * 10
        assert torch.equal(model.encode(seqs, embeddings=emb + junk * pad), base)
        assert torch.equal(model.encode(seqs, seq_delta=junk * pad), base)
        moved = model.encode(seqs, seq_delta=junk * ~pad)
    full = (seqs != PAD).any(1)
    assert not torch.allclose(moved[full], base[full])
    with pytest.raises(ValueError, match="seq_delta must have shape"):
        model.encode(seqs, seq_delta=torch.zeros(8, T, DIM + 1))


@pytest.mark.parametrize("kind", KINDS)
def test_a_row_does_not_depend_on_its_batch(kind):
    rng = np.random.default_rng(5)
    model = make(kind)
    seqs = random_seqs(rng, 6, T)
    with torch.no_grad():
        together = model.encode(seqs)
        for r in range(len(seqs)):
            torch.testing.assert_close(model.encode(seqs[r:r + 1])[0], together[r], atol=1e-6, rtol=1e-6)


# --- scoring --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_scores_are_user_embedding_dot_item_table(kind):
    rng = np.random.default_rng(6)
    model = make(kind)
    model.set_histories(random_seqs(rng, N_USERS, T).numpy())
    users = torch.tensor([3, 0, 6, 3])
    delta = {"item": torch.randn(N_ITEMS, DIM) * 0.3}
    with torch.no_grad():
        for d in (None, delta):
            table = model.item + (0 if d is None else d["item"])
            w = model.user_embedding(model.histories[users], d)
            torch.testing.assert_close(w, model.encode(model.histories[users], d)[:, -1])
            full = model.full_scores(users, d)
            assert full.shape == (4, N_ITEMS)
            torch.testing.assert_close(full, w @ table.t(), atol=1e-6, rtol=1e-6)
            items = torch.tensor([0, 19, 5, 5])
            torch.testing.assert_close(model.score(users, items, d), full[torch.arange(4), items])
            grid = torch.from_numpy(rng.integers(0, N_ITEMS, (4, 3)))
            torch.testing.assert_close(model.score(users, grid, d), torch.gather(full, 1, grid))
        # the perturbation reaches both levels: the history embeddings and the scored items
        assert not torch.allclose(model.user_embedding(model.histories[users], delta),
                                  model.user_embedding(model.histories[users]))
        assert not torch.allclose(model.full_scores(users, delta), model.full_scores(users))
    assert set(model.perturbable()) == {"item"} and model.perturbable()["item"] is model.item


@pytest.mark.parametrize("kind", KINDS)
def test_delta_and_index_errors(kind):
    model = make(kind)
    users = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"delta\['item'\] has shape"):
        model.full_scores(users, {"item": torch.zeros(N_ITEMS, DIM + 1)})
    with pytest.raises(ValueError, match=r"delta\['item'\] has shape"):
        model.score(users, torch.tensor([1, 2]), {"item": torch.zeros(N_ITEMS - 1, DIM)})
    with pytest.raises(ValueError, match="perturbable tensors are"):
        model.full_scores(users, {"user": torch.zeros(N_USERS, DIM)})
    with pytest.raises(IndexError, match="users"):
        model.full_scores(torch.tensor([N_USERS]))
    with pytest.raises(IndexError, match="items"):
        model.score(users, torch.tensor([0, N_ITEMS]))
    with pytest.raises(ValueError, match="users must be an integer"):
        model.full_scores(torch.tensor([0.0]))
    for bad in (torch.zeros(2, T + 1, dtype=torch.long), torch.zeros(T, dtype=torch.long),
                torch.zeros(2, T, dtype=torch.int32)):
        with pytest.raises(ValueError, match="seq must"):
            model.encode(bad)


# --- histories ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_set_histories_left_pads_shorter_and_validates(kind):
    rng = np.random.default_rng(7)
    model = make(kind)
    assert (model.histories == PAD).all()
    short = random_seqs(rng, N_USERS, 3).numpy()
    model.set_histories(short)
    want = np.concatenate([np.full((N_USERS, T - 3), PAD), short], axis=1)
    np.testing.assert_array_equal(model.histories.numpy(), want)
    with torch.no_grad():
        s_short = model.full_scores(torch.arange(N_USERS))
        model.set_histories(want)
        assert torch.equal(model.full_scores(torch.arange(N_USERS)), s_short)
    model.set_histories(np.zeros((N_USERS, 0), dtype=np.int64))
    assert (model.histories == PAD).all()
    model.set_histories(want)
    before = model.histories.clone()
    bad_cases = [
        (ValueError, "shape", np.zeros((N_USERS - 1, T), dtype=np.int64)),
        (ValueError, "shape", np.zeros((N_USERS, T + 1), dtype=np.int64)),
        (ValueError, "2-D", np.zeros(N_USERS, dtype=np.int64)),
        (ValueError, "integer", np.zeros((N_USERS, T))),
        (IndexError, "n_items", np.full((N_USERS, T), N_ITEMS)),
        (ValueError, "row 2", np.where(np.arange(N_USERS)[:, None] == 2,
                                       np.r_[0, [PAD] * (T - 1)], 0)),
    ]
    for exc, msg, bad in bad_cases:
        with pytest.raises(exc, match=msg):
            model.set_histories(bad)
        assert torch.equal(model.histories, before)


@pytest.mark.parametrize("kind", KINDS)
def test_using_histories_restores_even_when_the_block_raises(kind):
    rng = np.random.default_rng(8)
    model = make(kind)
    first, other = random_seqs(rng, N_USERS, T).numpy(), random_seqs(rng, N_USERS, T).numpy()
    model.set_histories(first)
    with model.using_histories(other) as m:
        assert m is model
        np.testing.assert_array_equal(model.histories.numpy(), other)
    np.testing.assert_array_equal(model.histories.numpy(), first)
    with pytest.raises(RuntimeError, match="inside"):
        with model.using_histories(other):
            np.testing.assert_array_equal(model.histories.numpy(), other)
            raise RuntimeError("inside")
    np.testing.assert_array_equal(model.histories.numpy(), first)
    with pytest.raises(IndexError):
        with model.using_histories(np.full((N_USERS, T), N_ITEMS)):
            pass  # pragma: no cover
    np.testing.assert_array_equal(model.histories.numpy(), first)


# --- losses ---------------------------------------------------------------------------------------

def tiny_batch(rng, b=4, n_items=N_ITEMS):
    seq = random_seqs(rng, b, T, min_len=1)
    seq[-1] = PAD  # one all-padding row
    pos = torch.where(seq != PAD, torch.from_numpy(rng.integers(0, n_items, (b, T))), PAD)
    neg = torch.where(seq != PAD, torch.from_numpy(rng.integers(0, n_items, (b, T))), PAD)
    return {"user": torch.arange(b), "seq": seq, "pos": pos, "neg": neg}


@pytest.mark.parametrize("kind", KINDS)
def test_bce_loss_matches_hand_written_reference(kind):
    model = make(kind, seed=2)
    batch = tiny_batch(np.random.default_rng(9))
    with torch.no_grad():
        states = model.encode(batch["seq"]).double()
        table = model.item.double()
        terms = []
        for r, c in zip(*np.nonzero(batch["pos"].numpy() != PAD)):
            rp = float(states[r, c] @ table[batch["pos"][r, c]])
            rn = float(states[r, c] @ table[batch["neg"][r, c]])
            terms.append(-(math.log(1 / (1 + math.exp(-rp))) + math.log(1 - 1 / (1 + math.exp(-rn)))))
        got = float(model.loss(batch))
    assert len(terms) > 3
    assert got == pytest.approx(sum(terms) / len(terms), rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_ce_loss_matches_torch_cross_entropy_over_valid_positions(kind):
    model = make(kind, seed=3, loss="ce")
    batch = tiny_batch(np.random.default_rng(10))
    with torch.no_grad():
        states = model.encode(batch["seq"])
        valid = batch["pos"] != PAD
        want = F.cross_entropy(states[valid] @ model.item.t(), batch["pos"][valid])
        assert float(model.loss(batch)) == pytest.approx(float(want), rel=1e-6)
        no_neg = {k: v for k, v in batch.items() if k != "neg"}
        assert float(model.loss(no_neg)) == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_bce_without_negatives_is_an_error(kind):
    batch = tiny_batch(np.random.default_rng(11))
    del batch["neg"]
    with pytest.raises(ValueError, match="neg"):
        make(kind).loss(batch)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_all_padding_rows_give_no_nan_forward_or_backward(kind, loss):
    model = make(kind, loss=loss, dropout=0.2).train()
    batch = tiny_batch(np.random.default_rng(12))
    for b in (batch, {k: torch.full_like(v, PAD) if k != "user" else v for k, v in batch.items()}):
        model.zero_grad()
        out = model.loss(b)
        assert torch.isfinite(out)
        out.backward()
        for name, p in model.named_parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), name
    assert model.item.grad is not None
    with torch.no_grad():
        model.eval()
        states = model.encode(batch["seq"])
    assert torch.isfinite(states).all() and torch.equal(states[-1], torch.zeros_like(states[-1]))


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_only_in_train_mode(kind):
    model = make(kind, dropout=0.5)
    seqs = random_seqs(np.random.default_rng(13), 6, T, min_len=2)
    with torch.no_grad():
        assert torch.equal(model.encode(seqs), model.encode(seqs))
        model.train()
        assert not torch.equal(model.encode(seqs), model.encode(seqs))


# --- construction and checkpoints -----------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_constructor_validation(kind):
    cls = SASRec if kind == "sasrec" else GRU4Rec
    for name, bad in [("dim", 0), ("dim", -3), ("dim", 2.0), ("dim", True), ("max_len", 0),
                      ("max_len", 1.5), ("n_users", 0), ("n_items", 0)]:
        kwargs = {"n_users": 3, "n_items": 5, name: bad}
        with pytest.raises(ValueError, match=name):
            cls(**kwargs)
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="dropout"):
            cls(3, 5, dropout=bad)
    with pytest.raises(ValueError, match="loss"):
        cls(3, 5, loss="mse")
    if kind == "sasrec":
        for bad in (0, -1, 1.0, True):
            with pytest.raises(ValueError, match="n_blocks"):
                SASRec(3, 5, n_blocks=bad)
        assert len(SASRec(3, 5, dim=4, max_len=3, n_blocks=3).blocks) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_weights(kind):
    a, b, c = make(kind, seed=4), make(kind, seed=4), make(kind, seed=5)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_round_trip(kind, tmp_path):
    rng = np.random.default_rng(14)
    model = make(kind, seed=6, dropout=0.1, loss="ce")
    with torch.no_grad():
        for p in model.parameters():  # move every weight off its seeded initial value
            p.add_(torch.randn(p.shape) * 0.1)
    model.set_histories(random_seqs(rng, N_USERS, T).numpy())
    save_checkpoint(model, tmp_path / "m")
    back = load_checkpoint(tmp_path / "m.pt").eval()
    assert type(back) is type(model) and back.config() == model.config()
    assert torch.equal(back.histories, model.histories)
    users = torch.arange(N_USERS)
    with torch.no_grad():
        assert torch.equal(back.full_scores(users), model.full_scores(users))
    fresh = make(kind, seed=6, dropout=0.1, loss="ce")
    with torch.no_grad():
        assert not torch.equal(fresh.full_scores(users), model.full_scores(users))


# --- history exclusion in evaluation --------------------------------------------------------------

def walk_data(rng, n_users, n_items, length):
    """Each user sees ``length`` distinct random items at increasing times."""
    users = np.repeat(np.arange(n_users), length)
    items = np.concatenate([rng.permutation(n_items)[:length] for _ in range(n_users)])
    ts = np.tile(np.arange(length), n_users)
    return Interactions(users, items, None, ts, n_users, n_items, np.arange(n_users), np.arange(n_items))


@pytest.mark.parametrize("kind", KINDS)
def test_evaluation_never_ranks_history_items(kind):
    rng = np.random.default_rng(15)
    n_users, n_items, max_len = 30, 40, 8
    split = leave_one_out(walk_data(rng, n_users, n_items, 14), order="time")
    model = make(kind, max_len=max_len, n_users=n_users, n_items=n_items, seed=1)
    model.set_histories(user_sequences(split.train, max_len, split.valid))
    res = evaluate(model, split.test, exclude=(split.train, split.valid), k=(10,))
    assert res.info["n_test_excluded_overlap"] == 0
    seen = exclusion_csr(split.train, split.valid)
    assert len(res.users) == n_users and res.topk.shape == (n_users, 10)
    for j, u in enumerate(res.users):
        own = set(seen[1][seen[0][u]:seen[0][u + 1]].tolist())
        assert len(own) == 13
        assert not own & set(res.topk[j].tolist())
    with torch.no_grad():
        scores = model.full_scores(torch.from_numpy(res.users)).numpy()
    idx, _ = kernels.topk_scores(scores, 10, exclude=seen, rows=res.users)
    np.testing.assert_array_equal(idx, res.topk)
    # not vacuous: without the exclusion the lists change and hold history items
    raw, _ = kernels.topk_scores(scores, 10)
    assert (raw != res.topk).any(axis=1).sum() > n_users // 2
    hits = sum(bool(set(raw[j].tolist()) & set(seen[1][seen[0][u]:seen[0][u + 1]].tolist()))
               for j, u in enumerate(res.users))
    assert hits > n_users // 2
    plain = evaluate(model, split.test, exclude=(), k=(10,))
    assert (plain.topk != res.topk).any()


@pytest.mark.parametrize("cls", [SASRec, GRU4Rec])
def test_construction_leaves_the_global_generator_alone(cls):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = cls(N_USERS, N_ITEMS, dim=DIM, max_len=T, seed=1)
    assert torch.equal(torch.rand(3), expected)
    second = cls(N_USERS, N_ITEMS, dim=DIM, max_len=T, seed=1)  # the seed alone decides the weights
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
