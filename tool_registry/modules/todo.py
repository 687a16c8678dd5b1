"""Todo: tasks the user wants to get done, optionally with a due date and a priority."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tool_registry.clock import iso
from tool_registry.confirm import deletes
from tool_registry.context import ToolContext
from tool_registry.listing import Listing
from tool_registry.models import (
    Clear,
    Deleted,
    IsoDate,
    RecordId,
    ToolInput,
    ToolOutput,
    UpdateInput,
)
from tool_registry.spec import ToolSpec
from tool_registry.store.records import Filter, Record

MODULE = "todo"
TODOS = "todos"

Priority = Literal["low", "normal", "high"]
Status = Literal["open", "done", "all"]
Title = Annotated[str, Field(min_length=1, max_length=200, description="What needs doing.")]
Notes = Annotated[str, Field(max_length=5000, description="Free-text details.")]


class Todo(ToolOutput):
    id: str
    title: str
    notes: str | None = None
    due_date: str | None = None
    priority: Priority
    done: bool
    completed_at: str | None = None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, rec: Record) -> Todo:
        return cls.model_validate(rec.as_dict())


# -- todo.create -------------------------------------------------------------------------------


class CreateTodoInput(ToolInput):
    title: Title
    notes: Notes | None = None
    due_date: IsoDate | None = Field(default=None, description="Due date, YYYY-MM-DD.")
    priority: Priority = Field(default="normal", description="low, normal or high.")


async def create_todo(inp: CreateTodoInput, ctx: ToolContext) -> Todo:
    data = {**inp.model_dump(by_alias=True), "done": False, "completedAt": None}
    return Todo.of(await ctx.store.insert(TODOS, data))


CREATE = ToolSpec(
    name="todo.create",
    title="Create todo",
    description=(
        "Add a task to the user's todo list in the active space, optionally with a due date "
        "(YYYY-MM-DD), notes and a priority (low, normal, high; default normal). For recurring "
        "routines use habits.create instead. Returns the created todo with its id."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    input=CreateTodoInput,
    output=Todo,
    handler=create_todo,
)


# -- todo.list ---------------------------------------------------------------------------------


class ListTodosInput(ToolInput):
    status: Status = Field(
        default="open", description="open (not done, the default), done, or all."
    )
    due_before: IsoDate | None = Field(
        default=None,
        description="Only todos due strictly before this date (YYYY-MM-DD); todos without a "
        "due date are then left out. Pass tomorrow's date for 'due today or overdue'.",
    )
    limit: int = Field(default=50, ge=1, le=200, description="Maximum number of todos.")


class TodoList(ToolOutput):
    todos: list[Todo]


async def list_todos(inp: ListTodosInput, ctx: ToolContext) -> TodoList:
    filters: list[Filter] = []
    if inp.status != "all":
        filters.append(Filter("done", "eq", inp.status == "done"))
    dated = [*filters, Filter("dueDate", "not_null")]
    if inp.due_before is not None:
        dated.append(Filter("dueDate", "lt", inp.due_before.isoformat()))
    listing = Listing(ctx, "todo", "todos", limit=inp.limit)
    records = await listing.read(TODOS, filters=dated, order_by="dueDate", limit=inp.limit)
    # The store orders ties by id (creation time to the millisecond); make it exact.
    records.sort(key=lambda r: (r.data["dueDate"], r.created_at, r.id))
    if inp.due_before is None and len(records) < inp.limit:
        undated = [*filters, Filter("dueDate", "is_null")]
        records += await listing.read(
            TODOS, filters=undated, order_by="created_at", limit=inp.limit - len(records)
        )
    await listing.finish()
    return TodoList(todos=[Todo.of(r) for r in records])


LIST = ToolSpec(
    name="todo.list",
    title="List todos",
    description=(
        "List todos in the active space: open ones by default, or done/all. Todos with a due "
        "date come first, earliest due first, then todos without a due date, oldest first. "
        "Use dueBefore to answer 'what is due by ...?'. Use this to find a todo's id before "
        "completing, reopening, updating or deleting it."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="read",
    input=ListTodosInput,
    output=TodoList,
    handler=list_todos,
)


# -- todo.complete -----------------------------------------------------------------------------


class TodoIdInput(ToolInput):
    id: RecordId


async def complete_todo(inp: TodoIdInput, ctx: ToolContext) -> Todo:
    rec = await ctx.store.require(TODOS, inp.id, label="todo")
    if rec.data.get("done"):
        return Todo.of(rec)
    changes = {"done": True, "completedAt": iso(ctx.now())}
    return Todo.of(await ctx.store.update(TODOS, inp.id, changes))


COMPLETE = ToolSpec(
    name="todo.complete",
    title="Complete todo",
    description=(
        "Mark a todo as done (records completedAt). Completing a todo that is already done "
        "changes nothing and returns it as is. Needs the todo's id from todo.list."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    input=TodoIdInput,
    output=Todo,
    handler=complete_todo,
)


# -- todo.reopen -------------------------------------------------------------------------------


async def reopen_todo(inp: TodoIdInput, ctx: ToolContext) -> Todo:
    rec = await ctx.store.require(TODOS, inp.id, label="todo")
    if not rec.data.get("done"):
        return Todo.of(rec)
    changes = {"done": False, "completedAt": None}
    return Todo.of(await ctx.store.update(TODOS, inp.id, changes))


REOPEN = ToolSpec(
    name="todo.reopen",
    title="Reopen todo",
    description=(
        "Mark a done todo as open again (clears completedAt), e.g. when it was completed by "
        "mistake or needs doing again. Reopening a todo that is already open changes nothing "
        "and returns it as is. Needs the todo's id from todo.list (status done or all)."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    input=TodoIdInput,
    output=Todo,
    handler=reopen_todo,
)


# -- todo.update -------------------------------------------------------------------------------


class UpdateTodoInput(UpdateInput):
    id: RecordId
    title: Title | None = None
    notes: Notes | None = None
    due_date: IsoDate | None = Field(default=None, description="New due date, YYYY-MM-DD.")
    priority: Priority | None = None
    clear: Clear[Literal["dueDate", "notes"]] = None


async def update_todo(inp: UpdateTodoInput, ctx: ToolContext) -> Todo:
    await ctx.store.require(TODOS, inp.id, label="todo")
    return Todo.of(await ctx.store.update(TODOS, inp.id, inp.changes()))


UPDATE = ToolSpec(
    name="todo.update",
    title="Update todo",
    description=(
        "Change a todo's title, notes, due date or priority. Only the fields you pass change; "
        "omitted or null fields keep their value. To remove the due date or the notes, list "
        'them in clear, e.g. clear: ["dueDate"]. To mark it done use todo.complete. Returns '
        "the updated todo."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="write",
    idempotent=True,
    input=UpdateTodoInput,
    output=Todo,
    handler=update_todo,
)


# -- todo.delete -------------------------------------------------------------------------------


async def delete_todo(inp: TodoIdInput, ctx: ToolContext) -> Deleted:
    return Deleted.of(await ctx.store.soft_delete(TODOS, inp.id))


DELETE = ToolSpec(
    name="todo.delete",
    title="Delete todo",
    description=(
        "Delete a todo (soft delete: it disappears from every list). Destructive: only "
        "available where the space owner allowed it; to finish a task prefer todo.complete."
    ),
    module=MODULE,
    scope="user-space",
    policy_hint="destructive",
    idempotent=True,
    input=TodoIdInput,
    output=Deleted,
    handler=delete_todo,
    confirmation=deletes(TODOS, "the to-do '{title}'"),
)

TOOLS = (CREATE, LIST, COMPLETE, REOPEN, UPDATE, DELETE)
