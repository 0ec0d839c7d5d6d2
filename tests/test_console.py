"""Progress where the output is not a terminal: lines a log can show."""

import io

from rich.console import Console

from imitate.console import LoggedProgress, progress_bar
from imitate.pipeline import _preparation_notes


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_into_a_log_prints_a_line_every_30_s_and_one_at_the_end():
    out, clock = io.StringIO(), Clock()
    log = Console(file=out, force_terminal=False, width=200)
    with progress_bar(console=log, get_time=clock) as bar:
        assert isinstance(bar, LoggedProgress)
        task = bar.add_task("reconstructing walk", total=10)
        for t, done in [(5, 1), (20, 2), (31, 3), (40, 4), (60, 5), (62, 6), (95, 9), (96, 10)]:
            clock.now = t
            bar.update(task, completed=done)
        bar.update(task, completed=10)  # finished already: no second end line
    lines = out.getvalue().splitlines()
    # an explicit account: 30 s after the start (t=31), 30 s after that line (t=62 and t=95: 33 s
    # later), and the end
    assert [line.split(":")[1].split(",")[0].strip() for line in lines] == ["3/10", "6/10", "9/10", "10/10"]
    assert lines[0].startswith("reconstructing walk: 3/10, 0:31 elapsed, about ") and lines[0].endswith(" left")
    assert "left" not in lines[-1] and "1:36 elapsed" in lines[-1]


def test_progress_on_a_terminal_is_richs_own_bar():
    log = Console(file=io.StringIO(), force_terminal=True)
    bar = progress_bar(console=log)
    assert not isinstance(bar, LoggedProgress)


def test_preparation_notes_say_each_tenth_once_and_where_a_stalled_search_is_every_minute():
    notes, clock = [], Clock()
    progress = _preparation_notes("jump", notes.append, every_s=60.0, clock=clock)
    # (time [s], steps reached of 100): advances, then rewinds that get no further
    for t, done in [(1, 3), (2, 9), (3, 12), (4, 15), (10, 21), (20, 18), (50, 15), (75, 18), (100, 21),
                    (130, 24), (140, 30), (150, 27)]:
        clock.now = t
        progress(done, 100, "reconstructing")
    reached = [int(n.split(": ")[1].split("/")[0]) for n in notes]
    # 12 (first tenth), 21 (second), 18 at t=75 (60 s after t=10's note), 30 (third tenth)
    assert reached == [12, 21, 18, 30]
    progress(100, 100, "reconstructing")
    assert notes[-1].endswith("100/100") and "jump" in notes[-1]


def test_progress_into_a_log_says_where_work_that_ended_short_stopped():
    """A task that ends short of its total (a reconstruction that gives up) gets a last line when
    the bar stops; counts in the millions read as such."""
    out, clock = io.StringIO(), Clock()
    with progress_bar(console=Console(file=out, force_terminal=False, width=200), get_time=clock) as bar:
        task = bar.add_task("reconstructing jump", total=600)
        clock.now = 40
        bar.update(task, completed=36)  # a line (40 s after the start)
        clock.now = 50
        bar.update(task, completed=39)  # none yet (10 s after the last)
        samples = bar.add_task("collecting", total=2_000_000)
        bar.update(samples, completed=1_500_000)  # (just started: no line)
        bar.add_task("waiting", total=10)  # never moved: no line at the stop either
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] if "jump" in line else line.split(", ")[0] for line in lines] == [
        "reconstructing jump: 36/600", "reconstructing jump: 39/600", "collecting: 1,500,000/2,000,000"]
