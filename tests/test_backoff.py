"""Restart delays and the give-up rule: growth, cap, jitter, reset, and when to stop."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor._core.backoff import BackoffPolicy, GiveUpRule, Jitter, RestartTracker
from supervisor._core.state import ProcessState, Trigger, transition

JITTERS: list[Jitter] = ["full", "equal", "none"]


@st.composite
def policies(draw: st.DrawFn, jitter: Jitter | None = None) -> BackoffPolicy:
    """Any valid policy, with sizes from milliseconds to hours."""
    initial = draw(st.floats(min_value=1e-3, max_value=1e3))
    return BackoffPolicy(
        initial=initial,
        factor=draw(st.floats(min_value=1.0, max_value=100.0)),
        cap=initial * draw(st.floats(min_value=1.0, max_value=1e6)),
        jitter=draw(st.sampled_from(JITTERS)) if jitter is None else jitter,
        reset_after=draw(st.floats(min_value=0.0, max_value=1e4)),
    )


attempts = st.one_of(st.integers(min_value=1, max_value=100), st.integers(min_value=1))
seeds = st.integers(min_value=0, max_value=2**64)


def tracker(
    *,
    max_failures: int | None = 5,
    window: float = 300.0,
    reset_after: float = 60.0,
    jitter: Jitter = "none",
    seed: int = 0,
) -> RestartTracker:
    """A tracker with the default delays (1, 2, 4, ... 60 s) and, unless asked, no jitter."""
    return RestartTracker(
        BackoffPolicy(jitter=jitter, reset_after=reset_after),
        GiveUpRule(max_failures=max_failures, window=window),
        random.Random(seed),
    )


# -- BackoffPolicy -------------------------------------------------------------


def test_default_delays_double_up_to_a_minute() -> None:
    """The default policy waits 1, 2, 4, ... seconds and never more than 60."""
    policy = BackoffPolicy()
    assert [policy.base_delay(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


@given(policies(), st.integers(min_value=1, max_value=2000))
def test_base_delay_grows_geometrically_and_stops_at_cap(
    policy: BackoffPolicy, attempt: int
) -> None:
    """Each base delay is the previous one times factor, until it reaches the cap."""
    if attempt == 1:
        assert policy.base_delay(1) == policy.initial
    previous = policy.base_delay(attempt)
    current = policy.base_delay(attempt + 1)
    assert policy.initial <= previous <= current <= policy.cap
    assert math.isclose(current, min(policy.cap, previous * policy.factor), rel_tol=1e-9)


@given(policies(), attempts)
def test_base_delay_is_finite_and_capped_for_any_attempt(
    policy: BackoffPolicy, attempt: int
) -> None:
    """However many attempts, the base delay is a finite number between initial and cap."""
    delay = policy.base_delay(attempt)
    assert math.isfinite(delay)
    assert policy.initial <= delay <= policy.cap


def test_huge_attempt_counts_do_not_overflow() -> None:
    """Attempt 10_000 (where 2 ** 9_999 would overflow a float) gives exactly the cap."""
    policy = BackoffPolicy(factor=2.0, cap=60.0)
    rng = random.Random(1)
    assert policy.base_delay(10_000) == 60.0
    assert policy.base_delay(10**100) == 60.0
    for jitter in JITTERS:
        delay = BackoffPolicy(jitter=jitter).delay(10_000, rng)
        assert math.isfinite(delay)
        assert 0 <= delay <= 60.0


def test_factor_one_gives_a_constant_delay() -> None:
    """With factor 1 every retry waits the initial delay, as process-compose does."""
    policy = BackoffPolicy(initial=5.0, factor=1.0, cap=60.0, jitter="none")
    rng = random.Random(0)
    assert {policy.delay(n, rng) for n in (1, 2, 50, 10**9)} == {5.0}


@given(policies(jitter="full"), attempts, seeds)
def test_full_jitter_stays_between_zero_and_base(
    policy: BackoffPolicy, attempt: int, seed: int
) -> None:
    """Full jitter waits anywhere from zero up to the base delay."""
    delay = policy.delay(attempt, random.Random(seed))
    assert 0 <= delay <= policy.base_delay(attempt)


@given(policies(jitter="equal"), attempts, seeds)
def test_equal_jitter_stays_between_half_and_base(
    policy: BackoffPolicy, attempt: int, seed: int
) -> None:
    """Equal jitter waits at least half the base delay and at most all of it."""
    base = policy.base_delay(attempt)
    delay = policy.delay(attempt, random.Random(seed))
    assert base / 2 <= delay <= base


@given(policies(jitter="none"), attempts, seeds)
def test_no_jitter_is_the_base_delay(policy: BackoffPolicy, attempt: int, seed: int) -> None:
    """Without jitter the delay is exactly the base delay, whatever the random source."""
    assert policy.delay(attempt, random.Random(seed)) == policy.base_delay(attempt)


def test_jitter_actually_varies() -> None:
    """Full and equal jitter spread delays out rather than repeating one value."""
    rng = random.Random(7)
    for jitter in ("full", "equal"):
        policy = BackoffPolicy(jitter=jitter)
        assert len({policy.delay(3, rng) for _ in range(20)}) > 1


@given(policies(), seeds)
def test_same_seed_gives_the_same_delays(policy: BackoffPolicy, seed: int) -> None:
    """Two trackers seeded alike produce the same sequence of delays."""
    never = GiveUpRule(max_failures=None)
    first = RestartTracker(policy, never, random.Random(seed))
    second = RestartTracker(policy, never, random.Random(seed))
    times = [float(n) for n in range(12)]
    assert [first.on_failure(t) for t in times] == [second.on_failure(t) for t in times]


def test_attempt_must_count_from_one() -> None:
    """Attempt 0 is a caller's mistake and is refused."""
    with pytest.raises(ValueError, match="attempt"):
        BackoffPolicy().base_delay(0)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"initial": 0.0}, "BackoffPolicy.initial"),
        ({"initial": -1.0}, "BackoffPolicy.initial"),
        ({"initial": math.nan}, "BackoffPolicy.initial"),
        ({"initial": math.inf, "cap": math.inf}, "BackoffPolicy.initial"),
        ({"factor": 0.5}, "BackoffPolicy.factor"),
        ({"factor": math.inf}, "BackoffPolicy.factor"),
        ({"initial": 10.0, "cap": 5.0}, "BackoffPolicy.cap"),
        ({"cap": math.inf}, "BackoffPolicy.cap"),
        ({"jitter": "decorrelated"}, "BackoffPolicy.jitter"),
        ({"reset_after": -1.0}, "BackoffPolicy.reset_after"),
        ({"reset_after": math.nan}, "BackoffPolicy.reset_after"),
    ],
)
def test_invalid_policy_is_refused(options: dict[str, object], field: str) -> None:
    """An out-of-range policy field raises ValueError naming that field."""
    with pytest.raises(ValueError, match=rf"^{field} must be "):
        BackoffPolicy(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_failures": 0}, "GiveUpRule.max_failures"),
        ({"max_failures": -3}, "GiveUpRule.max_failures"),
        ({"window": 0.0}, "GiveUpRule.window"),
        ({"window": -1.0}, "GiveUpRule.window"),
        ({"window": math.nan}, "GiveUpRule.window"),
    ],
)
def test_invalid_give_up_rule_is_refused(options: dict[str, object], field: str) -> None:
    """An out-of-range give-up field raises ValueError naming that field."""
    with pytest.raises(ValueError, match=rf"^{field} must be "):
        GiveUpRule(**options)  # type: ignore[arg-type]


def test_edge_values_are_accepted() -> None:
    """The boundaries themselves are valid: cap equal to initial, factor 1, reset_after 0."""
    policy = BackoffPolicy(initial=2.0, factor=1.0, cap=2.0, reset_after=0.0)
    assert policy.base_delay(1_000) == 2.0
    assert GiveUpRule(max_failures=1, window=1e-9).max_failures == 1


# -- RestartTracker: delays and reset ------------------------------------------


def test_consecutive_failures_back_off() -> None:
    """Each failed start waits longer than the last, and attempt counts them."""
    restarts = tracker(max_failures=None)
    delays = [restarts.on_failure(float(t)) for t in range(8)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert restarts.attempt == 8


def test_stable_run_resets_the_delay() -> None:
    """A run of at least reset_after seconds brings the next delay back to initial."""
    restarts = tracker()
    assert [restarts.on_failure(t) for t in (0.0, 1.0, 3.0)] == [1, 2, 4]
    restarts.on_run_ended(now=67.0, uptime=60.0)
    assert restarts.attempt == 0
    assert restarts.failures_in_window(67.0) == 0
    assert restarts.on_failure(67.0) == 1


def test_short_run_does_not_reset() -> None:
    """A run shorter than reset_after leaves the attempt count, so delays keep growing."""
    restarts = tracker()
    assert [restarts.on_failure(t) for t in (0.0, 1.0, 3.0)] == [1, 2, 4]
    restarts.on_run_ended(now=66.9, uptime=59.9)
    assert restarts.attempt == 3
    assert restarts.on_failure(66.9) == 8


@given(st.floats(min_value=0.0, max_value=1e4), st.floats(min_value=0.0, max_value=1e4))
def test_reset_depends_only_on_uptime_against_reset_after(
    reset_after: float, uptime: float
) -> None:
    """The attempt count is cleared exactly when uptime reaches reset_after."""
    restarts = tracker(reset_after=reset_after, max_failures=None)
    restarts.on_failure(0.0)
    restarts.on_failure(1.0)
    restarts.on_run_ended(now=1.0 + uptime, uptime=uptime)
    assert restarts.attempt == (0 if uptime >= reset_after else 2)


def test_manual_reset_forgets_everything() -> None:
    """A start requested by a person clears the attempt count and the failure window."""
    restarts = tracker()
    for t in (0.0, 1.0, 2.0, 3.0):
        restarts.on_failure(t)
    restarts.reset()
    assert restarts.attempt == 0
    assert restarts.failures_in_window(3.0) == 0
    # Four more failures are allowed before the fifth gives up again.
    assert all(restarts.on_failure(t) is not None for t in (4.0, 5.0, 6.0, 7.0))
    assert restarts.on_failure(8.0) is None


def test_default_rng_gives_delays_within_bounds() -> None:
    """Without an injected random source, equal-jitter delays still stay in [base/2, base]."""
    restarts = RestartTracker(BackoffPolicy(), GiveUpRule(max_failures=None))
    delay = restarts.on_failure(0.0)
    assert delay is not None
    assert 0.5 <= delay <= 1.0


# -- RestartTracker: giving up -------------------------------------------------


def test_gives_up_at_the_fifth_failure_within_the_window() -> None:
    """With the defaults, four failures get a delay and the fifth within 300 s returns None."""
    restarts = tracker()
    assert [restarts.on_failure(t) for t in (0.0, 10.0, 20.0, 30.0)] == [1, 2, 4, 8]
    assert restarts.on_failure(40.0) is None
    assert restarts.failures_in_window(40.0) == 5


@given(
    max_failures=st.integers(min_value=1, max_value=10),
    window=st.integers(min_value=1, max_value=10_000),
    spacing=st.integers(min_value=0, max_value=10_000),
)
def test_give_up_trips_exactly_when_failures_fit_in_the_window(
    max_failures: int, window: int, spacing: int
) -> None:
    """Spaced failures trip the rule on the max_failures-th only if they span less than window."""
    restarts = tracker(max_failures=max_failures, window=float(window))
    results = [restarts.on_failure(float(n * spacing)) for n in range(3 * max_failures)]
    if (max_failures - 1) * spacing < window:
        assert all(delay is not None for delay in results[: max_failures - 1])
        assert results[max_failures - 1] is None
    else:
        assert all(delay is not None for delay in results)


def test_failures_spread_wider_than_the_window_never_give_up() -> None:
    """A program failing every 80 s never has five failures within 300 s: it retries forever."""
    restarts = tracker()
    assert all(restarts.on_failure(80.0 * n) is not None for n in range(100))
    assert restarts.failures_in_window(80.0 * 99) == 4


def test_a_failure_exactly_window_old_no_longer_counts() -> None:
    """The window is half-open: a failure exactly `window` seconds ago has dropped out."""
    restarts = tracker(max_failures=2, window=10.0)
    assert restarts.on_failure(0.0) is not None
    assert restarts.failures_in_window(9.999) == 1
    assert restarts.failures_in_window(10.0) == 0
    assert restarts.on_failure(10.0) is not None
    assert restarts.on_failure(19.0) is None


def test_max_failures_none_never_gives_up() -> None:
    """Without a limit even a thousand failures at the same instant get a capped delay."""
    restarts = tracker(max_failures=None)
    delays = [restarts.on_failure(0.0) for _ in range(1_000)]
    assert all(delay is not None and delay <= 60.0 for delay in delays)
    assert restarts.failures_in_window(0.0) == 1_000


def test_failure_memory_is_bounded_by_max_failures() -> None:
    """A tracker keeps no more than max_failures failure times, however many it sees."""
    restarts = tracker(max_failures=3, window=math.inf)
    for n in range(10_000):
        restarts.on_failure(float(n))
    assert restarts.failures_in_window(10_000.0) == 3
    assert restarts.attempt == 10_000


def test_failures_leave_the_window_as_time_passes() -> None:
    """Old failures stop counting once they are window seconds old, even without new calls."""
    restarts = tracker(window=100.0)
    for t in (0.0, 50.0, 90.0):
        restarts.on_failure(t)
    assert restarts.failures_in_window(95.0) == 3
    assert restarts.failures_in_window(120.0) == 2
    assert restarts.failures_in_window(190.0) == 0
    restarts.on_run_ended(now=190.0, uptime=1.0)
    assert restarts.attempt == 3


# -- Together with the state machine -------------------------------------------


def test_crash_loop_drives_the_state_machine_to_fatal() -> None:
    """A child dying at once every time backs off 1, 2, 4, 8 s and goes FATAL on failure five."""
    restarts = tracker()
    state = transition(ProcessState.STOPPED, Trigger.START)
    now = 0.0
    waits: list[float] = []
    while state is not ProcessState.FATAL:
        now += 0.1  # the child dies before start_seconds
        state = transition(state, Trigger.EXITED)
        restarts.on_run_ended(now, uptime=0.1)
        delay = restarts.on_failure(now)
        if delay is None:
            state = transition(state, Trigger.GIVE_UP)
        else:
            waits.append(delay)
            now += delay
            state = transition(state, Trigger.START)
    assert waits == [1, 2, 4, 8]
    assert restarts.attempt == 5


def test_crash_after_good_start_grows_delay_without_giving_up() -> None:
    """next_delay grows like failures do, but never trips the give-up rule."""
    tracker = RestartTracker(
        BackoffPolicy(initial=1, factor=2, cap=8, jitter="none"), GiveUpRule(max_failures=2)
    )
    delays = []
    for step in range(6):
        tracker.on_run_ended(now=float(step * 10), uptime=5.0)
        delays.append(tracker.next_delay())
    assert delays == [1, 2, 4, 8, 8, 8]
    assert tracker.failures_in_window(60.0) == 0
    tracker.on_run_ended(now=100.0, uptime=120.0)
    assert tracker.next_delay() == 1
