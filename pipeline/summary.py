"""What one intake run did, for the operator: the Prefect artifact and the command's last line."""

from __future__ import annotations

from dataclasses import dataclass, field

from creditflow.pipeline.dispatch import DispatchOutcome
from creditflow.pipeline.intake import FileOutcome


@dataclass
class RunSummary:
    files: list[FileOutcome] = field(default_factory=list)
    rendered: int = 0
    sent: int = 0
    retry_later: int = 0
    fell_back: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)
    no_channel: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (creditor, file, why)
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (creditor, name, why)
    waiting: int = 0  # uploads in progress or not settled yet: taken by a later poll

    def add_dispatch(self, outcome: DispatchOutcome) -> None:
        self.sent += outcome.sent
        self.retry_later += outcome.retry_later
        self.fell_back += outcome.fell_back
        self.no_channel.extend(outcome.no_channel)
        for channel, n in outcome.by_channel.items():
            self.by_channel[channel] = self.by_channel.get(channel, 0) + n

    @property
    def accepted(self) -> int:
        return sum(f.accepted for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    def one_line(self) -> str:
        return (f"{len(self.files)} file(s), {self.accepted} invoice(s) accepted, {self.rejected} row(s) "
                f"rejected, {self.rendered} PDF(s) rendered, {self.sent} message(s) sent"
                + (f", {self.retry_later} to retry" if self.retry_later else "")
                + (f", {len(self.no_channel)} without a channel" if self.no_channel else "")
                + (f", {len(self.failed)} file(s) FAILED" if self.failed else "")
                + (f", {len(self.refused)} name(s) refused" if self.refused else "")
                + (f", {self.waiting} upload(s) not settled yet" if self.waiting else ""))

    def failure_message(self) -> str:
        """The failed run's state message: which file and why, after what did succeed."""
        listed = "; ".join(f"{c}/{n}: {why}" for c, n, why in self.failed[:10])
        more = f" (and {len(self.failed) - 10} more)" if len(self.failed) > 10 else ""
        return f"{len(self.failed)} file(s) failed and stay in the inbox for the next run: {listed}{more}"

    def markdown(self) -> str:
        lines = ["# Billing intake", "", self.one_line(), "",
                 "| creditor | file | outcome | rows | accepted | rejected | error report | reason |",
                 "|---|---|---|---:|---:|---:|---|---|"]
        for f in self.files:
            report = f"`{f.error_report}`" if f.error_report else ""
            lines.append(f"| {f.creditor_id} | {_cell(f.name)} | {f.state} | {f.rows_total} | {f.accepted} | "
                         f"{f.rejected} | {report} | {_cell(f.reason or '')} |")
        for creditor, name, why in self.failed:
            lines.append(f"| {creditor} | {_cell(name)} | **failed** | | | | | {_cell(why)} |")
        for creditor, name, why in self.refused:
            lines.append(f"| {creditor} | {_cell(repr(name))} | refused | | | | | {_cell(why)} |")
        if not self.files and not self.failed and not self.refused:
            lines.append("| | (no new files) | | | | | | |")
        lines += ["", "| channel | messages sent |", "|---|---:|"]
        lines += [f"| {c} | {n} |" for c, n in sorted(self.by_channel.items())] or ["| (none) | 0 |"]
        if self.no_channel:
            lines += ["", "**No channel can reach these debtors:** " + ", ".join(self.no_channel[:50])]
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
