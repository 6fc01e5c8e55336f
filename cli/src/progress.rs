//! Progress output: on a terminal, build chatter overwrites one status line; otherwise every
//! step is a plain line (for logs and CI).

use std::io::{IsTerminal, Write};

pub struct Progress {
    tty: bool,
    verbose: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            verbose: std::env::var_os("RFAAS_VERBOSE").is_some(),
        }
    }

    /// A step of the work: always shown.
    pub fn step(&self, text: &str) {
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{text}");
    }

    /// Chatter from a build: on a TTY one updating line, otherwise only when RFAAS_VERBOSE is set.
    pub fn detail(&self, text: &str) {
        let mut err = std::io::stderr();
        if self.tty {
            let line: String = text.chars().take(100).collect();
            let _ = write!(err, "\r\x1b[2K  {line}");
            let _ = err.flush();
        } else if self.verbose {
            let _ = writeln!(err, "  {text}");
        }
    }

    /// Ends an updating line.
    pub fn done(&self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}
