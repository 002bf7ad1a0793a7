"""The session: one owner of the model, jobs one step at a time, urgent ones between the steps of a long one."""

import threading

import pytest

from semiotui.engine.session import JobEnded, JobFailed, NeedsModel, Scheduler, open_session


class Recorder:
    """Collects (job kind, event) as the session posts them, and says when a job has ended."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.lock = threading.Lock()

    def __call__(self, job, event) -> None:
        with self.lock:
            self.events.append((job.kind, event))


def _steps(name: str, count: int, gate: threading.Event | None = None):
    def steps(job):
        for k in range(count):
            if gate is not None:
                gate.wait(5)
            yield f"{name}{k}"

    return steps


def test_an_urgent_job_runs_between_two_steps_of_a_long_one():
    scheduler, record = Scheduler(), Recorder()
    first_step = threading.Event()
    gate = threading.Event()

    def long(job):
        yield "long0"
        first_step.set()
        gate.wait(5)  # the urgent job arrives while this step runs
        yield "long1"
        yield "long2"

    slow = scheduler.submit("long", long, record)
    assert first_step.wait(5)
    quick = scheduler.submit("maps", _steps("maps", 1), record, urgent=True)
    gate.set()
    assert slow.ended.wait(5) and quick.ended.wait(5)
    names = [event for _, event in record.events if isinstance(event, str)]
    assert names == ["long0", "long1", "maps0", "long2"]  # after the step under way, not after the whole job
    scheduler.close()


def test_jobs_of_equal_standing_run_in_turn_and_each_ends_with_jobended():
    scheduler, record = Scheduler(), Recorder()
    a = scheduler.submit("a", _steps("a", 2), record)
    b = scheduler.submit("b", _steps("b", 2), record)
    assert a.ended.wait(5) and b.ended.wait(5)
    kinds = [(kind, event if isinstance(event, str) else type(event).__name__) for kind, event in record.events]
    assert kinds == [("a", "a0"), ("a", "a1"), ("a", "JobEnded"), ("b", "b0"), ("b", "b1"), ("b", "JobEnded")]
    scheduler.close()


def test_an_aborted_job_runs_its_finally_and_a_failure_is_posted_and_the_session_goes_on():
    scheduler, record = Scheduler(), Recorder()
    cleaned = threading.Event()
    gate = threading.Event()

    def endless(job):
        try:
            while True:
                gate.wait(5)
                yield "tick"
        finally:
            cleaned.set()

    def broken(job):
        yield "before"
        raise ValueError("no such layer")

    gate.set()
    job = scheduler.submit("endless", endless, record)
    while ("endless", "tick") not in record.events:  # under way: its generator is open
        threading.Event().wait(0.01)
    job.abort()
    assert job.ended.wait(5) and cleaned.wait(5)
    failing = scheduler.submit("broken", broken, record)
    after = scheduler.submit("after", _steps("after", 1), record)
    assert failing.ended.wait(5) and after.ended.wait(5)
    failure = [event for kind, event in record.events if kind == "broken" and isinstance(event, JobFailed)]
    assert str(failure[0].error) == "no such layer"
    assert ("after", "after0") in record.events
    assert [e.aborted for k, e in record.events if k == "endless" and isinstance(e, JobEnded)] == [True]
    scheduler.close()


def test_close_drops_every_job_and_stops_the_thread():
    scheduler, record = Scheduler(), Recorder()
    gate = threading.Event()
    jobs = [scheduler.submit("slow", _steps("slow", 100, gate), record) for _ in range(3)]
    gate.set()
    assert scheduler.close(timeout=5)
    assert all(job.ended.is_set() and job.aborted for job in jobs)
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.submit("late", _steps("late", 1), record)


def test_a_saved_report_replays_its_result_and_refuses_what_needs_the_model(tmp_path):
    from helpers import demo_workspace

    from semiotui.engine.analysis import Finished, analyse
    from semiotui.engine.reports.write import write_report
    from semiotui.engine.saved import open_report

    workspace = demo_workspace(8, batch_size=8)
    result = analyse(workspace.model, workspace.images.batches(8), workspace.layers, workspace.settings)
    saved = open_report(write_report(tmp_path / "rep", workspace, result, formats=("json", "csv")))
    session, record = open_session(saved), Recorder()
    assert not session.live
    job = session.analyse(record, saved.settings, saved.layers, keep_maps=8)
    assert job.ended.wait(5)
    finished = [event for _, event in record.events if isinstance(event, Finished)]
    assert finished[0].result is saved.result
    with pytest.raises(NeedsModel, match="needs the model"):
        session.prune(record, lambda: None, None, saved.settings)
    session.close()


def test_a_callback_that_raises_ends_its_job_with_the_error_and_the_next_job_runs():
    scheduler, record = Scheduler(), Recorder()

    def breaks_on_steps(job, event):
        record(job, event)
        if isinstance(event, str):
            raise RuntimeError("the screen went away")

    broken = scheduler.submit("broken", _steps("broken", 3), breaks_on_steps)
    after = scheduler.submit("after", _steps("after", 2), record)
    assert broken.ended.wait(5) and after.ended.wait(5)
    failed = [event for kind, event in record.events if kind == "broken" and not isinstance(event, str)]
    assert [type(event).__name__ for event in failed] == ["JobFailed", "JobEnded"]
    assert str(failed[0].error) == "the screen went away" and broken.error is failed[0].error
    assert [event for kind, event in record.events if kind == "broken" and isinstance(event, str)] == ["broken0"]
    assert [event for kind, event in record.events if kind == "after"][:2] == ["after0", "after1"]
    assert after.error is None
    scheduler.close()


def test_a_callback_that_raises_on_jobended_still_ends_its_job_and_the_session_goes_on():
    scheduler, record = Scheduler(), Recorder()

    def breaks_at_the_end(job, event):
        if isinstance(event, JobEnded):
            raise RuntimeError("no one to tell")

    first = scheduler.submit("first", _steps("first", 1), breaks_at_the_end)
    assert first.ended.wait(5)
    assert str(first.error) == "no one to tell"
    second = scheduler.submit("second", _steps("second", 1), record)
    assert second.ended.wait(5)
    assert ("second", "second0") in record.events
    scheduler.close()


def test_run_to_end_returns_the_final_event_shows_every_other_and_consumes_the_whole_stream():
    from semiotui.engine.streams import run_to_end

    closed = []

    def stream():
        try:
            yield "batch 1"
            yield "batch 2"
            yield 42
        finally:
            closed.append(True)

    shown = []
    assert run_to_end(stream(), int, shown.append) == 42
    assert shown == ["batch 1", "batch 2"] and closed == [True]
    with pytest.raises(AssertionError, match="the stream ended without int"):
        run_to_end(iter(["batch 1"]), int)


def test_job_events_brings_a_jobs_events_to_the_callers_thread_and_raises_its_failure_once_it_ended():
    from semiotui.engine.session import job_events
    from semiotui.engine.streams import run_to_end

    scheduler = Scheduler()
    submit = lambda post, steps: scheduler.submit("job", steps, post)  # noqa: E731 (a Session method's shape)
    threads = []

    def counted(job):
        yield 1
        yield 2
        yield "done"

    assert run_to_end(job_events(submit, counted), str, lambda e: threads.append(threading.current_thread())) == "done"
    assert threads == [threading.current_thread()] * 2
    mine = threading.Event()  # the caller's, as Ctrl-C sets it: a job that ended leaves it alone
    submit_with = lambda post, steps: scheduler.submit("job", steps, post, cancel=mine)  # noqa: E731
    assert run_to_end(job_events(submit_with, counted), str) == "done" and not mine.is_set()
    cleaned = threading.Event()

    def broken(job):
        try:
            yield "before"
            raise ValueError("no such layer")
        finally:
            cleaned.set()

    events = job_events(submit, broken)
    assert next(events) == "before"
    with pytest.raises(ValueError, match="no such layer"):
        next(events)
    assert cleaned.is_set()  # the job ended (its generator closed) before its error reached the caller
    scheduler.close()


def test_leaving_job_events_early_drops_the_job():
    from semiotui.engine.session import job_events

    scheduler = Scheduler()
    jobs = []

    def submit(post, steps):
        jobs.append(scheduler.submit("endless", steps, post))
        return jobs[-1]

    def endless(job):
        while True:
            yield "tick"

    events = job_events(submit, endless)
    assert next(events) == "tick"
    events.close()  # as a second Ctrl-C leaves the loop
    assert jobs[0].ended.wait(5) and jobs[0].aborted
    scheduler.close()


def test_the_control_is_a_job_of_its_own_that_says_what_it_runs_on_and_attaches_its_result():
    from helpers import demo_workspace

    from semiotui.engine import ControlFinished, ControlProgress, ControlSettings, Finished
    from semiotui.engine.session import Preparing, job_events
    from semiotui.engine.streams import run_to_end

    workspace = demo_workspace(6, batch_size=6, control=ControlSettings(draws=2, images=64))
    with open_session(workspace) as session:
        analysed = list(job_events(session.analyse, workspace.settings, workspace.layers, keep_maps=0, control=False))
        assert type(analysed[-1]) is Finished  # no control after the analysis
        result = analysed[-1].result
        shown = []
        finished = run_to_end(job_events(session.control, result), ControlFinished, shown.append)
    assert shown[0] == Preparing("control: 2 copies of the model with shuffled weights on 6 images spread across "
                                 "the classes, one more pass each")  # 6 of the 64 asked for: all there are
    assert [event.done for event in shown if isinstance(event, ControlProgress)] == [1, 2]
    assert result.control is finished.control and finished.control.entropy.shape[:2] == (2, 6)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the bug is raised in its thread
def test_jobs_left_when_the_session_thread_stops_end_with_an_error_and_a_new_job_restarts_it(monkeypatch):
    scheduler, record = Scheduler(), Recorder()
    gate = threading.Event()
    running = scheduler.submit("running", _steps("running", 2, gate), record)
    waiting = scheduler.submit("waiting", _steps("waiting", 1), record)
    real_next = Scheduler._next
    calls = []

    def next_then_break(self):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a bug in the scheduler")
        return real_next(self)

    monkeypatch.setattr(Scheduler, "_next", next_then_break)
    gate.set()
    assert running.ended.wait(5) and waiting.ended.wait(5)  # woken, not left waiting forever
    assert "session stopped" in str(waiting.error) and "a bug in the scheduler" in str(waiting.error)
    assert [type(e).__name__ for k, e in record.events if k == "waiting"] == ["JobFailed", "JobEnded"]
    monkeypatch.setattr(Scheduler, "_next", real_next)
    later = scheduler.submit("later", _steps("later", 1), record)
    assert later.ended.wait(5) and ("later", "later0") in record.events
    scheduler.close()
