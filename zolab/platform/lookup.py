"""Find plans, tasks and jobs by what a user types: an id or a stored plan's name.

One place for "no such plan" so every command (and the dashboard) refuses the same way: a
:class:`NotFound` whose message is one line that names what was asked and where to look.
"""

from __future__ import annotations

from zolab.db.repo import plans as plans_repo
from zolab.db.retry import retry_on_transient
from zolab.db.session import session_scope


class NotFound(LookupError):
    """An unknown plan, task or job (one human line)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


def plan_id_of(url: str | None, ref: str | int) -> int:
    """The id of a stored plan given its id or its name; :class:`NotFound` otherwise.

    A name shared by several stored plans is refused with their ids (names are not unique)."""
    text = str(ref).strip()

    def read() -> int:
        with session_scope(url) as s:
            if text.isdigit():
                if plans_repo.get_plan(s, int(text)) is None:
                    raise NotFound(f"no plan with id {text} (see `zolab plan list`)")
                return int(text)
            matches = [p.id for p in plans_repo.list_plans(s) if p.name == text]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise NotFound(f"{len(matches)} stored plans are named {text!r}: use an id "
                           f"({', '.join(map(str, sorted(matches)))})")
        raise NotFound(f"no plan named {text!r} (see `zolab plan list`)")

    return retry_on_transient(read, what="find a plan")


def plan_tasks(url: str | None, plan_id: int) -> list[str]:
    """The tasks a stored plan lists."""

    def read() -> list[str]:
        with session_scope(url) as s:
            plan = plans_repo.get_plan(s, plan_id)
            if plan is None:
                raise NotFound(f"no plan with id {plan_id} (see `zolab plan list`)")
            return [str(t) for t in (plan.plan_json or {}).get("tasks") or []]

    return retry_on_transient(read, what="read a plan's tasks")


def check_task(url: str | None, plan_id: int, task: str) -> str:
    """``task`` if the plan lists it, else :class:`NotFound` naming the plan's tasks."""
    tasks = plan_tasks(url, plan_id)
    if task not in tasks:
        raise NotFound(f"plan {plan_id} has no task {task!r} (its tasks: {', '.join(tasks) or 'none'})")
    return task


__all__ = ["NotFound", "check_task", "plan_id_of", "plan_tasks"]
