"""Streaming features: samples in blocks of any size give the offline frames.

The offline reference is the model's own path (ESPnet's default frontend,
then its global MVN; or Kaldi fbank, then the MVN), on the whole utterance.
Every frame is compared, the first and the last included: the streaming
STFT pads both ends as the offline one does (see the module). The numpy
log-mel (``LogMelFrontend``, what a device without torch runs) is held to
the torch one the same way.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.layers.global_mvn import GlobalMVN
from espnet2.layers.utterance_mvn import UtteranceMVN

from espnet_shared_conformer.audio_io import kaldi_fbank
from espnet_shared_conformer.features import LogMelFrontend, StreamingFeatures

FS = 16000
#: Block sizes: one sample, 10 ms, 1000 samples, random sizes.
BLOCKS = {"1": [1], "160": [160], "1000": [1000], "random": "random"}
#: The tiny test models' frontend, and the recipe's (conf/train_asr.yaml).
FRONTENDS = {
    "n_fft 256, hop 128": dict(n_fft=256, win_length=256, hop_length=128, n_mels=20),
    "n_fft 512, win 400, hop 160": dict(
        n_fft=512, win_length=400, hop_length=160, n_mels=40
    ),
}


def audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like samples: tones that come and go, in noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    tones = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 1250 * t)
    return (0.3 * envelope * tones + 0.01 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def global_mvn(tmp_path, dim: int) -> GlobalMVN:
    rng = np.random.default_rng(1)
    stats = tmp_path / "feats_stats.npz"
    count = 1000
    mean = rng.normal(-5.0, 2.0, dim)
    np.savez(stats, count=count, sum=mean * count, sum_square=(mean**2 + 4.0) * count)
    return GlobalMVN(stats)


def blocks(samples: np.ndarray, sizes, seed: int = 0):
    if sizes == "random":
        rng = np.random.default_rng(seed)
        sizes = rng.integers(1, 3000, size=len(samples)).tolist()
    start = 0
    for size in sizes * len(samples) if len(sizes) == 1 else sizes:
        if start >= len(samples):
            return
        yield samples[start : start + size]
        start += size


def streamed(features: StreamingFeatures, samples, sizes, seed=0) -> torch.Tensor:
    features.begin()
    frames = [features.step(block) for block in blocks(samples, sizes, seed)]
    frames.append(features.end())
    return torch.from_numpy(np.concatenate(frames))


def offline(model, samples: np.ndarray) -> torch.Tensor:
    """The model's own features of the whole utterance (as ESPnet's encode)."""
    speech = torch.from_numpy(samples)[None]
    lengths = torch.tensor([speech.size(1)])
    with torch.no_grad():
        feats, lengths = model.frontend(speech, lengths)
        feats, _ = model.normalize(feats, lengths)
    return feats[0]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sizes", BLOCKS.values(), ids=BLOCKS)
@pytest.mark.parametrize("conf", FRONTENDS.values(), ids=FRONTENDS)
def test_stft_features_in_blocks_are_the_offline_features(tmp_path, conf, sizes, seed):
    model = SimpleNamespace(
        frontend=DefaultFrontend(fs=FS, **conf).eval(),
        normalize=global_mvn(tmp_path, conf["n_mels"]),
    )
    # Lengths that end on a hop and between hops alike.
    samples = audio(0.3 if sizes == [1] else 1.234, seed)[: 4800 + 37 * seed]
    expected = offline(model, samples)
    got = streamed(StreamingFeatures(model), samples, sizes, seed)

    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_frames_come_out_as_soon_as_their_window_is_in():
    """Frame m needs the samples up to m * hop + n_fft / 2 (frame 0 one more:
    the reflection of samples 1 to n_fft / 2 goes before it); end() gives
    the (n_fft / 2) / hop frames whose windows reach past the end."""
    conf = FRONTENDS["n_fft 256, hop 128"]  # half a window: one hop
    model = SimpleNamespace(frontend=DefaultFrontend(fs=FS, **conf), normalize=None)
    features = StreamingFeatures(model)
    assert (features.hop_length, features.dim) == (128, 20)
    features.begin()
    samples = audio(0.2)[:1300]  # 1300 // 128 + 1 = 11 frames offline

    assert len(features.step(samples[:128])) == 0
    assert len(features.step(samples[128:129])) == 1  # frame 0
    assert len(features.step(samples[129:255])) == 0
    assert len(features.step(samples[255:256])) == 1  # frame 1: up to 128 + 128
    assert len(features.step(samples[256:])) == 8  # frames 2-9
    assert len(features.end()) == 1  # frame 10
    assert len(offline_without_mvn(model, samples)) == 11


def offline_without_mvn(model, samples):
    speech = torch.from_numpy(samples)[None]
    return model.frontend(speech, torch.tensor([speech.size(1)]))[0][0]


@pytest.mark.parametrize("sizes", BLOCKS.values(), ids=BLOCKS)
def test_fbank_features_in_blocks_are_the_offline_features(tmp_path, sizes):
    """A model trained on dumped Kaldi fbank (no frontend): the same fbank."""
    normalize = global_mvn(tmp_path, 23)
    model = SimpleNamespace(frontend=None, normalize=normalize)
    samples = audio(0.3 if sizes == [1] else 1.234)
    feats = torch.from_numpy(kaldi_fbank(samples, FS, 23))
    expected = normalize(feats[None], None)[0][0]
    features = StreamingFeatures(model, FS, n_mels=23)
    got = streamed(features, samples, sizes)

    assert (features.hop_length, features.dim) == (160, 23)

    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_features_reset_between_utterances(tmp_path):
    conf = FRONTENDS["n_fft 512, win 400, hop 160"]
    model = SimpleNamespace(
        frontend=DefaultFrontend(fs=FS, **conf),
        normalize=global_mvn(tmp_path, conf["n_mels"]),
    )
    features = StreamingFeatures(model)
    first, second = audio(0.5, 3), audio(0.7, 4)
    streamed(features, first, [777])

    torch.testing.assert_close(
        streamed(features, second, [777]), offline(model, second), atol=1e-4, rtol=0
    )


def test_what_cannot_stream_is_refused(tmp_path):
    frontend = DefaultFrontend(fs=FS, **FRONTENDS["n_fft 256, hop 128"])
    with pytest.raises(ValueError, match="normalize=UtteranceMVN: streaming"):
        StreamingFeatures(SimpleNamespace(frontend=frontend, normalize=UtteranceMVN()))
    with pytest.raises(ValueError, match="n_mels=None: the model has no frontend"):
        StreamingFeatures(SimpleNamespace(frontend=None, normalize=None))
    with pytest.raises(ValueError, match="frontend Identity: streaming features"):
        StreamingFeatures(SimpleNamespace(frontend=torch.nn.Identity(), normalize=None))
    features = StreamingFeatures(SimpleNamespace(frontend=frontend, normalize=None))
    with pytest.raises(RuntimeError, match=r"step\(\) before begin\(\)"):
        features.step(np.zeros(10, np.float32))
    features.begin()
    with pytest.raises(
        ValueError, match=r"samples must be mono \(T,\), not .* \(10, 2\)"
    ):
        features.step(np.zeros((10, 2), np.float32))
    features.step(np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="100 samples: the model's STFT pads 128"):
        features.end()


# -- the numpy log-mel ---------------------------------------------------------

#: The two frontends above, and one with a hamming window shorter than n_fft,
#: a normalized STFT and no centring.
NUMPY_FRONTENDS = {
    **FRONTENDS,
    "hamming 300 in 512, normalized, not centred": dict(
        n_fft=512, win_length=300, hop_length=100, n_mels=30, window="hamming",
        normalized=True, center=False,
    ),
}  # fmt: skip
#: Odd block sizes: one sample, 7, 333, random.
ODD_BLOCKS = {"1": [1], "7": [7], "333": [333], "random": "random"}


@pytest.mark.parametrize("sizes", ODD_BLOCKS.values(), ids=ODD_BLOCKS)
@pytest.mark.parametrize("conf", NUMPY_FRONTENDS.values(), ids=NUMPY_FRONTENDS)
def test_numpy_log_mel_frames_are_the_torch_frames(conf, sizes):
    """Every frame, the first and the last included, to 1e-4."""
    frontend = DefaultFrontend(fs=FS, **conf).eval()
    by_torch = StreamingFeatures(SimpleNamespace(frontend=frontend, normalize=None))
    by_numpy = StreamingFeatures(LogMelFrontend.of_module(frontend))
    samples = audio(0.3 if sizes == [1] else 1.234, seed=2)[: 4800 + 37]
    expected = offline_without_mvn(SimpleNamespace(frontend=frontend), samples)
    torch_frames = streamed(by_torch, samples, sizes)
    got = streamed(by_numpy, samples, sizes)

    assert (by_numpy.dim, by_numpy.hop_length) == (by_torch.dim, by_torch.hop_length)
    assert got.shape == torch_frames.shape == expected.shape
    torch.testing.assert_close(got, torch_frames, atol=1e-4, rtol=0)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_numpy_log_mel_of_the_tiny_models_tones_and_silence():
    """The tiny streaming model's utterance: pure tones and digital silence.
    Every frame to 1e-4 in the bands within 12 nats (52 dB) of the frame's
    strongest; far below it (mel energies under 1e-7 of the peak) torch's
    float32 FFT has its own rounding noise, which the float64 numpy one has
    not, and the two differ by up to 2e-3 there."""
    from tiny_asr import streaming_utterance

    frontend = DefaultFrontend(fs=FS, **FRONTENDS["n_fft 256, hop 128"]).eval()
    samples = streaming_utterance()
    expected = offline_without_mvn(SimpleNamespace(frontend=frontend), samples)
    got = streamed(
        StreamingFeatures(LogMelFrontend.of_module(frontend)), samples, [999]
    )

    assert got.shape == expected.shape
    strong = expected >= expected.max(dim=1, keepdim=True).values - 12
    assert strong.float().mean() > 0.3  # most of the tones' bands
    torch.testing.assert_close(got[strong], expected[strong], atol=1e-4, rtol=0)
    torch.testing.assert_close(got, expected, atol=1e-2, rtol=0)
    silent = expected == expected.min()
    assert silent.any() and (got[silent] == np.log(1e-10).astype(np.float32)).all()


def test_log_mel_frontend_round_trips_and_refuses_bad_data():
    frontend = DefaultFrontend(fs=FS, **FRONTENDS["n_fft 512, win 400, hop 160"])
    numbers = LogMelFrontend.of_module(frontend)
    description, arrays = numbers.description(), numbers.arrays()
    assert description == dict(
        kind="default", fs=FS, n_fft=512, win_length=400, hop_length=160,
        window="hann", center=True, normalized=False, n_mels=40, log_base=None,
        floor=1e-10,
    )  # fmt: skip
    # The module's own matrix; the window centred in n_fft, zeros around it.
    np.testing.assert_array_equal(arrays["mel"], frontend.logmel.melmat.numpy())
    assert (arrays["window"][:56] == 0).all() and (arrays["window"][456:] == 0).all()
    np.testing.assert_array_equal(
        arrays["window"][56:456], torch.hann_window(400).numpy()
    )
    again = LogMelFrontend.from_saved(description, arrays)
    samples = audio(0.2)
    np.testing.assert_array_equal(again.frames(samples), numbers.frames(samples))

    with pytest.raises(ValueError, match="frontend data without mel"):
        LogMelFrontend.from_saved(description, {"window": arrays["window"]})
    with pytest.raises(ValueError, match=r"mel matrix \(257, 39\): n_mels is 40"):
        LogMelFrontend.from_saved(description, {**arrays, "mel": arrays["mel"][:, 1:]})
    with pytest.raises(ValueError, match=r"mel matrix \(256, 40\) must be"):
        LogMelFrontend.from_saved(description, {**arrays, "mel": arrays["mel"][1:]})
    with pytest.raises(ValueError, match=r"window \(400,\) must be \(n_fft,\)"):
        LogMelFrontend.from_saved(description, {**arrays, "window": np.ones(400)})
    with pytest.raises(ValueError, match=r"frontend kind \('s3prl'\) is not"):
        LogMelFrontend.from_saved({**description, "kind": "s3prl"}, arrays)
    with pytest.raises(ValueError, match="frontend Identity: streaming features"):
        LogMelFrontend.of_module(torch.nn.Identity())


def test_importing_the_features_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys, espnet_shared_conformer.features; "
        "print([m for m in sys.modules if m.split('.')[0] in ('torch', 'espnet2')])"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
