"""The native loops' loader and builds: every build this CPU can run (AVX-512,
AVX2, no vector instructions, the portable fallback) passes the loop tests of
``test_native.py`` and the non-finite cases in a subprocess; a failed build
falls back with one warning, or is an error under ``TORCH_LSTM_MANUAL_NATIVE=require``;
the first build is announced once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import torch_lstm_manual.native as native
from torch_lstm_manual import LSTM, lstm_layer
from torch_lstm_manual.backends import BACKENDS
from torch_lstm_manual.lstm import resolve_backend

from helpers import needs_native


# The builds of the extension a process can load, by name: one per CPU
# capability torch reports (ATEN_CPU_CAPABILITY lowers it), and the portable
# build, which load() falls back to when the full build does not compile.
BUILD_NAMES = {
    "AVX512": "torch_lstm_manual_native_avx2_avx512",
    "AVX2": "torch_lstm_manual_native_avx2",
    "DEFAULT": "torch_lstm_manual_native",
    "portable": "torch_lstm_manual_native_portable",
}
CAPABILITIES = ["DEFAULT", "AVX2", "AVX512"]  # each CPU runs the ones up to its own
# What each build runs: the loop tests of this file and the native non-finite
# cases; by default those of float32 (where the builds differ most: vector
# gates and register tiles) on the short sequences, with -m slow all of them.
BUILD_TESTS = {
    False: "(loops_match_reference or from_input or (nonfinite and native)) and not float64 and not rows24",
    True: "loops_match_reference or thread_count or from_input or (nonfinite and native)",
}


@needs_native
@pytest.mark.parametrize("everything", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["float32", "all"])
@pytest.mark.parametrize("build", sorted(BUILD_NAMES))
def test_every_build_matches_reference(build, everything):
    """The builds this process does not load (without AVX-512: AVX2 tiles and
    gates; without vector instructions: BLAS and scalar gates; the portable
    fallback: products through ATen), each in a subprocess that runs the loop
    tests and the non-finite tests. A build that does not compile fails; one
    this CPU cannot run is skipped."""
    own = torch.backends.cpu.get_cpu_capability()
    if BUILD_NAMES[build] == native._ext.__name__:
        pytest.skip("the build this process runs")
    if native._ext.__name__ == BUILD_NAMES["portable"] and not native.required():
        pytest.skip("the full build does not compile here, this process runs the portable one")
    runs = CAPABILITIES.index(own) if own in CAPABILITIES else 0
    if build in CAPABILITIES and CAPABILITIES.index(build) > runs:
        pytest.skip(f"this CPU reports {own}")
    code = "import sys, pytest, torch, torch_lstm_manual.native as n\n"
    if build == "portable":
        code += "full = n._build\nn._build = lambda portable=False: full(portable=True)\n"
    else:
        code += f"assert torch.backends.cpu.get_cpu_capability() == {build!r}\n"
    code += (
        "assert n.load() is None, n.load()\n"
        f"assert n._ext.__name__ == {BUILD_NAMES[build]!r}, n._ext.__name__\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-W', 'ignore::UserWarning', "
        f"{os.path.join(os.path.dirname(__file__), 'test_native.py')!r}, "
        f"{os.path.join(os.path.dirname(__file__), 'test_nonfinite.py')!r}, "
        f"'-k', {BUILD_TESTS[everything]!r}]))\n"
    )
    env = dict(os.environ, TORCH_LSTM_MANUAL_NATIVE="require")
    if build != "portable":
        env["ATEN_CPU_CAPABILITY"] = build.lower()
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=os.path.dirname(__file__), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-3000:]
    assert "skipped" not in done.stdout, done.stdout[-3000:]


def test_import_does_not_build():
    code = (
        "import torch_lstm_manual, torch_lstm_manual.native as n\n"
        "from torch_lstm_manual.backends import BACKENDS\n"
        "assert not n._tried and 'native' not in BACKENDS\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def fresh_loader(monkeypatch):
    """The loader as in a new process: not tried yet, nothing registered."""
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_error", None)
    monkeypatch.setattr(native, "_ext", None)
    monkeypatch.setattr(native, "_announced", False)
    monkeypatch.delitem(BACKENDS, "native", raising=False)
    monkeypatch.delenv(native.ENV_SWITCH, raising=False)
    return monkeypatch


def test_failed_build_falls_back_with_one_warning(fresh_loader):
    def broken_build(portable=False):
        raise OSError("no C++ compiler found")

    fresh_loader.setattr(native, "_build", broken_build)
    x = torch.zeros(2, 1, 3)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found") as record:
        assert resolve_backend("auto", x) == "python"
        assert resolve_backend("auto", x) == "python"
        with pytest.raises(RuntimeError, match="backend='native' is not available: .*no C\\+\\+ compiler found"):
            resolve_backend("native", x)
        LSTM(3, 4)(x)[0].sum().backward()  # runs, in Python
        h0 = torch.zeros(1, 4)
        with pytest.raises(RuntimeError, match="backend='native' is not available"):
            lstm_layer(x, h0, h0, torch.zeros(16, 3), torch.zeros(16, 4), backend="native")
    assert len(record) == 1
    assert "native" not in BACKENDS


def test_environment_switch_disables_without_warning(fresh_loader, recwarn):
    fresh_loader.setenv(native.ENV_SWITCH, "0")
    fresh_loader.setattr(native, "_build", lambda **_: pytest.fail("built despite the switch"))
    assert resolve_backend("auto", torch.zeros(1)) == "python"
    with pytest.raises(RuntimeError, match=native.ENV_SWITCH):
        resolve_backend("native", torch.zeros(1))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_unsupported_dtype_does_not_build(fresh_loader):
    fresh_loader.setattr(native, "_build", lambda **_: pytest.fail("built for a float16 input"))
    assert resolve_backend("auto", torch.zeros(1, dtype=torch.float16)) == "python"
    with pytest.raises(RuntimeError, match="float32 and float64 tensors on the CPU; got a torch.float16"):
        resolve_backend("native", torch.zeros(1, dtype=torch.float16))


def test_required_switch_makes_a_failed_build_an_error(fresh_loader, recwarn):
    """TORCH_LSTM_MANUAL_NATIVE=require: no fallback to the Python loops, on
    the first call and every later one."""
    def broken_build(portable=False):
        raise OSError("no C++ compiler found")

    fresh_loader.setattr(native, "_build", broken_build)
    fresh_loader.setenv(native.ENV_SWITCH, "require")
    x = torch.zeros(2, 1, 3)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="no C\\+\\+ compiler found.*TORCH_LSTM_MANUAL_NATIVE=require"):
            resolve_backend("auto", x)
        with pytest.raises(RuntimeError, match="no C\\+\\+ compiler found"):
            LSTM(3, 4)(x)
    assert "native" not in BACKENDS
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


BROKEN_BUILD_TESTS = """
import torch_lstm_manual.native as n

def broken_build(portable=False):
    raise OSError("no C++ compiler found")

n._build = broken_build

from helpers import available_backends, native_loops, needs_native

@needs_native
def test_needs_native():
    pass

def test_available_backends():
    assert available_backends() == ["python"]
"""


@pytest.mark.parametrize("switch", ["1", "require"])
def test_required_switch_fails_the_native_tests(tmp_path, switch):
    """A broken build skips the tests that need the native loops and leaves
    native out of the parametrisations, except under the strict switch, where
    both fail."""
    (tmp_path / "test_broken.py").write_text(BROKEN_BUILD_TESTS)
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, TORCH_LSTM_MANUAL_NATIVE=switch, PYTHONPATH=os.pathsep.join([here, *sys.path]))
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-W", "ignore::RuntimeWarning"]
    done = subprocess.run(command + [str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True)
    if switch == "require":
        assert done.returncode == 1, done.stdout[-3000:]
        # The fixture behind needs_native fails in setup (an error); available_backends() raises.
        assert "1 failed, 1 error" in done.stdout and "TORCH_LSTM_MANUAL_NATIVE=require" in done.stdout
    else:
        assert done.returncode == 0, done.stdout[-3000:]
        assert "1 passed, 1 skipped" in done.stdout and "no C++ compiler found" in done.stdout


# --------------------------------------------------------------------------
# The first build says what it is doing; later processes say nothing.

ANNOUNCEMENT = "compiling the native LSTM loops once, about 40 s; cached in"


def load_in_subprocess(extensions, **env):
    code = "import torch_lstm_manual.native as n; n.load(); n.load()"
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(extensions), **env)
    env.pop(native.ENV_SWITCH, None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_first_build_is_announced_once(tmp_path):
    """An empty cache: the announcement, once, before the compiler runs (here a
    compiler that fails at once, so that both builds, full and portable, fail)."""
    compiler = tmp_path / "failing-c++"
    compiler.write_text("#!/bin/sh\nexit 1\n")
    compiler.chmod(0o755)
    done = load_in_subprocess(tmp_path / "extensions", CXX=str(compiler))
    assert done.stderr.count(ANNOUNCEMENT) == 1, done.stderr[-3000:]
    assert f"{ANNOUNCEMENT} {tmp_path / 'extensions'}" in done.stderr
    assert done.stderr.index(ANNOUNCEMENT) < done.stderr.index("failed to build")


@needs_native
def test_current_build_is_not_announced():
    """The cache this process loaded from holds a current build: a new process says nothing."""
    extensions = os.environ.get("TORCH_EXTENSIONS_DIR")
    if extensions is None:
        pytest.skip("TORCH_EXTENSIONS_DIR is not set: the cache is the user's")
    done = load_in_subprocess(extensions)
    assert done.returncode == 0 and ANNOUNCEMENT not in done.stderr, done.stderr[-3000:]


@pytest.mark.slow
def test_build_announced_in_first_process_only(tmp_path):
    """A real build into an empty cache: the first process announces it, the second does not."""
    first = load_in_subprocess(tmp_path)
    assert first.returncode == 0 and first.stderr.count(ANNOUNCEMENT) == 1, first.stderr[-3000:]
    second = load_in_subprocess(tmp_path)
    assert second.returncode == 0 and ANNOUNCEMENT not in second.stderr, second.stderr[-3000:]
