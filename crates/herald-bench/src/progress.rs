//! Progress on stderr: an [`indicatif`] bar, drawn only when stderr is a
//! terminal (and `--quiet` is not given), so that the JSON on stdout and logs
//! of stderr stay clean. Lines that scripts wait for go through
//! [`Progress::println`], which prints them in any case.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a bar is redrawn at most (indicatif's own limit is 20 per second).
pub const REDRAW: Duration = Duration::from_millis(200);

/// A progress bar, or nothing when it would not be seen.
#[derive(Clone, Debug)]
pub struct Progress {
    bar: ProgressBar,
    /// Whether the phase lines (`note`) are printed: not with `--quiet`.
    notes: bool,
}

impl Progress {
    /// A bar of `len` steps named `prefix`, drawn when `enabled` and stderr is a
    /// terminal.
    pub fn new(enabled: bool, prefix: &str, len: u64) -> Self {
        let bar = if enabled && std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        // The template is fixed: it parses, and if it did not, the default style serves.
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} {elapsed:>4} [{wide_bar}] {pos}/{len} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(prefix.to_owned());
        Self { bar, notes: enabled }
    }

    /// Moves the bar to `pos` of `len`, with `msg` after the counts.
    pub fn set(&self, pos: u64, len: u64, msg: String) {
        if self.bar.is_hidden() {
            return;
        }
        self.bar.set_length(len);
        self.bar.set_position(pos);
        self.bar.set_message(msg);
    }

    /// Renames the bar (a new phase) and starts it again at 0 of `len`.
    pub fn phase(&self, prefix: &str, len: u64) {
        self.bar.set_prefix(prefix.to_owned());
        self.bar.set_length(len);
        self.bar.set_position(0);
        self.bar.set_message("");
    }

    /// A line on stderr that must be printed even with `--quiet` (scripts wait for it).
    pub fn println(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// A line on stderr about a phase that ended, unless `--quiet`.
    pub fn note(&self, line: &str) {
        if self.notes {
            self.println(line);
        }
    }

    /// Removes the bar, leaving stderr as it was before it.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
