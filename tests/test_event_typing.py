"""An event says which message it carries: ``Event[ApprovalRequest]`` and ``narrow``."""

from __future__ import annotations

from supervisor import ApprovalRequest, Event, TaskStart, validate_payload
from supervisor._core.frames import Frame, FrameDecoder

APPROVAL = (
    b'__IPC_START__{"type":"ipc","version":"1.0","event":"approval_request",'
    b'"data":{"action":"deploy","description":"ship it","timeout":20},'
    b'"timestamp":1706543240000,"messageId":"m-1"}__IPC_END__'
)


def _event() -> Event:
    items = FrameDecoder(validate_payload).feed(APPROVAL)
    frames = [item for item in items if isinstance(item, Frame)]
    assert len(frames) == 1
    return Event(1, "loop", 1706543240001, "child", frames[0].message)


def test_narrow_gives_the_same_event_typed_when_the_message_is_of_that_kind() -> None:
    """``narrow(ApprovalRequest)`` returns the event itself, whose data is the approval's."""
    event = _event()
    approval: Event[ApprovalRequest] | None = event.narrow(ApprovalRequest)
    assert approval is event
    assert approval.message.data.action == "deploy"
    assert approval.message.data.timeout == 20


def test_narrow_gives_none_for_another_kind() -> None:
    """An approval is not a task start: ``narrow(TaskStart)`` is None."""
    assert _event().narrow(TaskStart) is None


def test_an_event_read_back_from_its_line_narrows_as_the_original() -> None:
    """The kind survives the journal: a line read back narrows to the same message type."""
    again = Event.from_json(_event().to_json())
    narrowed = again.narrow(ApprovalRequest)
    assert narrowed is not None
    assert narrowed.message.data.description == "ship it"
