"""Modal screens: confirmation, a one-line prompt, a picker, a detail view, and the key help.

``q`` and esc back out of each of them; neither ever quits the app from here.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option


class Confirm(ModalScreen[bool]):
    """Asks before an action that changes the box; ``y`` confirms, ``n``/esc/q declines."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape,q", "answer(False)", "No")]

    def __init__(self, question: str):
        super().__init__(classes="modal")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, id="question")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="warning", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class Prompt(ModalScreen[str | None]):
    """One line of input (an alias name, a note, a job's parameters); enter submits, esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "", placeholder: str = "", hint: str = ""):
        super().__init__(classes="modal")
        self.question, self.value, self.placeholder, self.hint = question, value, placeholder, hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, id="prompt-question")
            if self.hint:
                yield Static(self.hint, classes="hint")
            yield Input(self.value, placeholder=self.placeholder, id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class Picker(ModalScreen[str | None]):
    """Choose one of a list (a job kind): arrows or j/k, enter picks, esc cancels."""

    BINDINGS = [Binding("escape,q", "cancel", "Cancel"), Binding("j", "down", show=False),
                Binding("k", "up", show=False)]

    def __init__(self, question: str, choices: list[tuple[str, str]]):
        super().__init__(classes="modal")
        self.question, self.choices = question, choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            yield OptionList(*(Option(f"[b]{name}[/b]  [dim]{about}[/]", id=name) for name, about in self.choices),
                             id="choices")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()

    def action_cancel(self) -> None:
        self.dismiss(None)


class Detail(ModalScreen[None]):
    """A scrollable page of detail (markup allowed, nothing cut); esc or q goes back."""

    BINDINGS = [Binding("escape,q", "dismiss", "Back"), Binding("j", "down", show=False),
                Binding("k", "up", show=False)]

    def __init__(self, title: str, body: str):
        super().__init__(classes="modal")
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(f"[b]{self.title_text}[/b]", id="detail-title")
            with VerticalScroll(id="detail-scroll"):
                yield Static(self.body, id="detail-body")

    def action_down(self) -> None:
        self.query_one(VerticalScroll).scroll_down()

    def action_up(self) -> None:
        self.query_one(VerticalScroll).scroll_up()


class Help(Detail):
    """The keys of the screen below, read from its bindings (and the app's), so help cannot disagree with them."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Back")]

    def __init__(self, body: str):
        super().__init__("Keys", body)
