"""A blind side-by-side review page: a clinician compares the checkpoint's replies with the previous stage's.

    python -m stages.review --report reports/stage2 [--against previous|base] [--show-reasoning] \
        [--port 7860] [--share-host 0.0.0.0]

One prompt at a time (the whole conversation), two replies in full (what the person would see,
reasoning blocks removed, unless --show-reasoning) as A and B in an order drawn per
prompt and kept on the server, keyed by the browser session: neither the page nor any state sent
to the browser says which model wrote which reply. The reviewer types a name, picks A, B or tie
(keys a, b, t; s skips), may flag a reply as unsafe with a short reason; each rating is appended to
<report>/reviews.jsonl at once (evals.review_pairs), so typing the same name after a reload resumes
at the first prompt not yet rated. Then `python -m stages.evaluate --reviews <report>` gates on it.

Privacy: the page binds to 127.0.0.1 unless --share-host names another address (inside a Lightning
Studio, 0.0.0.0 behind the Studio's own port forwarding); no share link is ever made, Gradio's
analytics are off, and nothing but the typed name and the ratings is stored.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: it reads this at import

import argparse  # noqa: E402
import html  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from evals.review_pairs import (  # noqa: E402
    MAX_REASON,
    Pair,
    ReviewFileError,
    append_review,
    load_pairs,
    read_reviews,
    review_record,
    still_to_review,
)
from evals.safety import visible_reply  # noqa: E402

MAX_NAME = 80
# a/b/t/s press the buttons unless the reviewer is typing (name or reason).
SHORTCUTS = """
<script>
document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey || !target) return;
  if (["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName) || target.isContentEditable) return;
  const id = {a: "choose-a", b: "choose-b", t: "choose-tie", s: "skip"}[event.key.toLowerCase()];
  if (!id) return;
  const element = document.getElementById(id);
  const button = element && (element.tagName === "BUTTON" ? element : element.querySelector("button"));
  if (button) { event.preventDefault(); button.click(); }
});
</script>
"""
INTRO = (
    "# Blind review\n"
    "Two replies to the same conversation, written by two models and shown in an order drawn for each "
    "prompt. Pick the better reply for a person in this situation, or a tie; flag any reply that is "
    "unsafe and say why in a few words. Keys when not typing: **a**, **b**, **t** (tie), **s** (skip). "
    "Your ratings are saved as you make them; type the same name later to continue."
)


def shown(text: str) -> str:
    """Markdown as written, with tags escaped: a <think>...</think> shown with --show-reasoning stays
    visible as written instead of being dropped as unknown HTML by the page's sanitiser."""
    return html.escape(text, quote=False)


@dataclass
class Session:
    """One browser session's place in the queue; the hidden order lives only here."""

    reviewer: str
    queue: list[Pair]
    done: int
    order: dict[str, str] = field(default_factory=dict)


class ReviewApp:
    def __init__(self, report: Path, against: str, show_reasoning: bool = False) -> None:
        self.report = report
        self.show_reasoning = show_reasoning
        self.other, self.pairs = load_pairs(report, against)
        if not self.pairs:
            raise ReviewFileError(f"{report}: no prompt has replies from both the checkpoint and the {self.other}")
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Lock()
        self.rng = random.SystemRandom()  # the order is not predictable from earlier ones

    def _draw(self, session: Session) -> None:
        if session.queue:
            models = list(session.queue[0].replies)
            self.rng.shuffle(models)
            session.order = {"A": models[0], "B": models[1]}

    def _reply(self, text: str) -> str:
        """What the person would see (reasoning removed: a stage that adds reasoning would otherwise
        unblind every pair), or the whole reply with --show-reasoning."""
        if self.show_reasoning:
            return shown(text)
        return shown(visible_reply(text)) or "*(no visible reply: all of it is reasoning)*"

    def _view(self, session: Session | None, message: str = "") -> tuple:
        """progress, system prompt, conversation, reply A, reply B, unsafe A, unsafe B, reason, message."""
        total = len(self.pairs)
        if session is None:
            return ("Type your name and press **Start**.", "", [], "", "", False, False, "", message)
        if not session.queue:
            done = (
                f"All {total} prompts are reviewed, {session.reviewer}: thank you. The gate counts them with "
                f"`python -m stages.evaluate --reviews {self.report}`."
            )
            return (done, "", [], "", "", False, False, "", message)
        pair = session.queue[0]
        progress = f"**Prompt {session.done + 1} of {total}** · suite {pair.suite or 'n/a'} · id `{pair.prompt_id}`"
        system = "\n\n".join(m["content"] for m in pair.messages if m["role"] == "system")
        conversation = [
            {"role": m["role"], "content": shown(m["content"])}
            for m in pair.messages
            if m["role"] in ("user", "assistant")
        ]
        return (
            progress,
            f"**System prompt:** {shown(system)}" if system else "",
            conversation,
            self._reply(pair.replies[session.order["A"]]),
            self._reply(pair.replies[session.order["B"]]),
            False,
            False,
            "",
            message,
        )

    def start(self, name: str, request: gr.Request) -> tuple:
        reviewer = (name or "").strip()
        if not reviewer or len(reviewer) > MAX_NAME:
            return self._view(None, f"Type a name of 1 to {MAX_NAME} characters.")
        with self.lock:
            reviews = read_reviews(self.report)
        queue = still_to_review(self.pairs, reviews, reviewer, self.other)
        session = Session(reviewer, queue, len(self.pairs) - len(queue))
        self._draw(session)
        self.sessions[request.session_hash] = session
        return self._view(session, f"Reviewing as {reviewer}.")

    def rate(
        self, choice: str, unsafe_a: bool, unsafe_b: bool, reason: str, shown_progress: str, request: gr.Request
    ) -> tuple:
        """shown_progress: the progress line the browser showed when the button was pressed; a second
        click that left before the page moved on names the prompt just rated and is not saved."""
        session = self.sessions.get(request.session_hash)
        if session is None:
            return self._view(None, "Type your name and press **Start** first.")
        if not session.queue:
            return self._view(session)
        if f"`{session.queue[0].prompt_id}`" not in (shown_progress or ""):
            return self._view(session, "That click was for a prompt already rated; nothing was saved for this one.")
        reason = (reason or "").strip()
        if (unsafe_a or unsafe_b) and not reason:
            view = list(self._view(session, "Say in a few words why the reply is unsafe, then choose again."))
            view[5:8] = [unsafe_a, unsafe_b, reason]
            return tuple(view)
        unsafe = {side: reason for side, flagged in (("A", unsafe_a), ("B", unsafe_b)) if flagged}
        record = review_record(session.queue[0], session.reviewer, session.order, choice, unsafe)
        with self.lock:
            append_review(self.report, record)
        session.queue.pop(0)
        session.done += 1
        self._draw(session)
        saved = "Skipped." if choice == "skip" else "Saved."
        return self._view(session, saved)

    def _rater(self, choice: str) -> Callable[..., tuple]:
        """A handler per button; the annotation tells Gradio to pass the request (the session key)."""

        def rate(unsafe_a: bool, unsafe_b: bool, reason: str, progress: str, request: gr.Request) -> tuple:
            return self.rate(choice, unsafe_a, unsafe_b, reason, progress, request)

        return rate

    def forget(self, request: gr.Request) -> None:
        self.sessions.pop(request.session_hash, None)

    def blocks(self) -> gr.Blocks:
        with gr.Blocks(title="Blind review", analytics_enabled=False) as page:
            gr.Markdown(INTRO)
            with gr.Row():
                name = gr.Textbox(label="Your name", max_lines=1, max_length=MAX_NAME, elem_id="reviewer", scale=4)
                start = gr.Button("Start", elem_id="start", variant="primary", scale=1)
            progress = gr.Markdown("Type your name and press **Start**.", elem_id="progress")
            system = gr.Markdown(elem_id="system-prompt")
            # No share button (it posts to Hugging Face) and no feedback icons: ratings come from the buttons.
            conversation = gr.Chatbot(
                label="Conversation", elem_id="conversation", height=360, buttons=["copy"], feedback_options=None
            )
            with gr.Row(equal_height=False):
                with gr.Column():
                    gr.Markdown("### Reply A")
                    reply_a = gr.Markdown(elem_id="reply-a")
                    unsafe_a = gr.Checkbox(label="Reply A is unsafe", elem_id="unsafe-a")
                with gr.Column():
                    gr.Markdown("### Reply B")
                    reply_b = gr.Markdown(elem_id="reply-b")
                    unsafe_b = gr.Checkbox(label="Reply B is unsafe", elem_id="unsafe-b")
            reason = gr.Textbox(
                label="Why unsafe (a few words; needed when a reply is flagged)",
                max_lines=2,
                max_length=MAX_REASON,
                elem_id="unsafe-reason",
            )
            with gr.Row():
                buttons = {
                    "A": gr.Button("A is better (a)", elem_id="choose-a"),
                    "tie": gr.Button("Tie (t)", elem_id="choose-tie"),
                    "B": gr.Button("B is better (b)", elem_id="choose-b"),
                    "skip": gr.Button("Skip (s)", elem_id="skip"),
                }
            message = gr.Markdown(elem_id="message")
            outputs = [progress, system, conversation, reply_a, reply_b, unsafe_a, unsafe_b, reason, message]
            start.click(self.start, [name], outputs)
            name.submit(self.start, [name], outputs)
            for choice, button in buttons.items():
                button.click(self._rater(choice), [unsafe_a, unsafe_b, reason, progress], outputs)
            page.unload(self.forget)
        return page


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.review", description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", required=True, type=Path, help="a report folder of stages.evaluate")
    parser.add_argument(
        "--against",
        choices=("previous", "base"),
        default="previous",
        help="the checkpoint's replies beside the previous stage's (the base model's at stage 1) or the base model's",
    )
    parser.add_argument(
        "--show-reasoning",
        action="store_true",
        help="show replies with their <think>/Reasoning: blocks (default: what the person sees; a stage that "
        "adds reasoning would give away which reply is whose)",
    )
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--share-host",
        default="127.0.0.1",
        help="the address to bind; 0.0.0.0 inside a Lightning Studio to reach the page through the Studio's "
        "port forwarding (default: this machine only)",
    )
    return parser.parse_args(argv)


def launch(app: ReviewApp, host: str, port: int, block: bool = True) -> gr.Blocks:
    page = app.blocks()
    page.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        ssr_mode=False,
        head=SHORTCUTS,
        footer_links=[],
        quiet=True,
    )
    return page


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        app = ReviewApp(args.report, args.against, args.show_reasoning)
    except (ReviewFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"reviewing {len(app.pairs)} prompts: checkpoint vs {app.other}; ratings go to {args.report / 'reviews.jsonl'}")
    print(f"open http://{args.share_host}:{args.port} (Ctrl+C to stop)")
    launch(app, args.share_host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
