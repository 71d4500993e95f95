//! The progress bar of long runs (scrub, audit, drain ...): bytes, rate
//! and ETA on a terminal; nothing when stderr is not a terminal or the
//! output is JSON, so scripts get clean output.

use std::io::IsTerminal;
use std::sync::Mutex;

use crate::maint::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws [`Progress`] events.
pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
    visible: bool,
}

impl Bar {
    /// A bar on stderr when it is a terminal and `quiet` is false.
    pub fn new(quiet: bool) -> Bar {
        Bar {
            bar: Mutex::new(None),
            visible: !quiet && std::io::stderr().is_terminal(),
        }
    }

    /// Handles one event.
    pub fn event(&self, p: Progress) {
        if !self.visible {
            return;
        }
        let mut slot = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match p {
            Progress::Phase { name, total } => {
                if let Some(b) = slot.take() {
                    b.finish_and_clear();
                }
                let b = if total > 0 {
                    ProgressBar::new(total)
                } else {
                    ProgressBar::new_spinner()
                };
                b.set_draw_target(ProgressDrawTarget::stderr());
                let style = if total > 0 {
                    ProgressStyle::with_template(
                        "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                } else {
                    ProgressStyle::with_template(
                        "{msg:>12} {spinner} {bytes} {binary_bytes_per_sec}",
                    )
                };
                if let Ok(style) = style {
                    b.set_style(style.progress_chars("=> "));
                }
                b.set_message(name);
                *slot = Some(b);
            }
            Progress::Advance { bytes } => {
                if let Some(b) = slot.as_ref() {
                    b.inc(bytes);
                }
            }
            Progress::Note { text } => match slot.as_ref() {
                Some(b) => b.println(text),
                None => eprintln!("{text}"),
            },
        }
    }

    /// Removes the bar (before the summary is printed).
    pub fn finish(&self) {
        if let Some(b) = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            b.finish_and_clear();
        }
    }
}
