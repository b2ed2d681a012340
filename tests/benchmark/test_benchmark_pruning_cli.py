"""tools/benchmark_pruning.py: option mistakes are one ``error:`` line and exit status 2."""
import pytest
import torch

from tiny_tool_helpers import load_tool


@pytest.mark.parametrize("argv, message", [
    (["--size", "0"], "error: --size must be >= 1, got 0"),
    (["--repeats", "0"], "error: --repeats must be >= 1, got 0"),
    (["--threads", "-1"], "error: --threads must be >= 0, got -1"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu' (choose from 'cpu', 'cuda')"),
])
def test_option_mistakes_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        load_tool("benchmark_pruning").main(["--config-file", "unet_tiny", *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if "error:" in line] == [line for line in err.splitlines() if message in line]
    assert sum(message in line for line in err.splitlines()) == 1


def test_cuda_without_a_gpu_is_one_line_error(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        load_tool("benchmark_pruning").main(["--config-file", "unet_tiny", "--device", "cuda"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == ("error: --device cuda was asked for but torch.cuda.is_available() is False "
                                       "on this machine\n")


def test_a_tiny_config_prints_its_modes(capsys):
    load_tool("benchmark_pruning").main(["--config-file", "unetpp_tiny", "--size", "32", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# unetpp_tiny at 32x32 on cpu, params total 12.50 M")
    assert [line.split()[1] for line in lines[2:]] == ["ensemble", "L1", "L2", "L3", "L4"]
