"""Helpers shared by the tests."""


def one_line_error(capsys, code, *needles) -> str:
    """The CLI refused with exit status 2 and one line on stderr (no traceback) holding every needle."""
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def interrupt_after(steps: int):
    """A TrainerCallback that stops a recovery run like Ctrl-C once `steps` optimizer steps are done."""
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step >= steps:
                raise KeyboardInterrupt(f"stopped after {steps} steps")

    return [Interrupt()]
