//! stderr logging that journald understands: each line starts with a syslog
//! priority (`<3>` error ... `<7>` debug), which journald turns into the
//! entry's priority (SyslogLevelPrefix=yes is its default).
//!
//! Log lines carry directory-controlled strings (emails, names, group ids). A
//! newline in one would start a new journal entry, and a `<0>` after it would
//! give that entry priority "emerg": so every message is rendered first and
//! then escaped (control characters become `\n`, `\u{1b}`, ...), whatever the
//! call site did. One event is always exactly one line.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

struct SyslogPrefix;

impl<S, N> FormatEvent<S, N> for SyslogPrefix
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let (prio, word) = match *event.metadata().level() {
            Level::ERROR => (3, "error"),
            Level::WARN => (4, "warning"),
            Level::INFO => (6, "info"),
            Level::DEBUG => (7, "debug"),
            Level::TRACE => (7, "trace"),
        };
        let mut message = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut message), event)?;
        write!(w, "<{prio}>{word}: ")?;
        write_escaped(&mut w, &message)?;
        writeln!(w)
    }
}

/// Characters that change how text around them is shown without being seen
/// themselves: control characters (Cc), Unicode's format characters (Cf:
/// bidirectional overrides such as U+202E, which make "moc.elpmaxe@evil" read
/// as something else, zero-width joiners, tag characters that smuggle
/// invisible ASCII), the line and paragraph separators (Zl, Zp) and the other
/// default-ignorable code points (variation selectors, Hangul fillers).
/// Directory strings may carry any of them. The table follows Unicode 15's
/// Cf and Default_Ignorable_Code_Point lists.
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// Writes `s` with every deceptive character (newline, carriage return,
/// escape, DEL, the C1 range, bidi overrides, zero-width and separator
/// characters) as a Rust-style escape, so nothing in it can end the line,
/// drive a terminal or disguise the text. Other non-ASCII text is kept.
pub fn write_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    for c in s.chars() {
        if c.is_control() {
            write!(out, "{}", c.escape_default())?;
        } else if is_deceptive(c) {
            write!(out, "{}", c.escape_unicode())?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

/// `s` escaped as `write_escaped` does, for messages shown elsewhere (status).
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let _ = write_escaped(&mut out, s);
    out
}

/// Prints one line to stdout with every control character escaped: what the
/// CLI shows an admin's terminal (emails, names, reasons that quote directory
/// strings) can never move the cursor, retitle the window or fake a line.
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut line = String::new();
    let _ = fmt::write(&mut line, args);
    println!("{}", escaped(&line));
}

/// `println!` for the CLI's reports, through `print_line`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::logging::print_line(format_args!($($arg)*))
    };
}

pub fn init(verbose: bool) {
    let level = if verbose { Level::DEBUG } else { Level::INFO };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(SyslogPrefix)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn log_with_our_format(f: impl FnOnce()) -> String {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .event_format(SyslogPrefix)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_hostile_email_cannot_forge_a_second_journal_entry() {
        let email = "eve@example.com\n<0>emerg: root password changed\r\x1b[2J";
        let out = log_with_our_format(|| tracing::warn!("skipped {email}: bad name"));
        assert_eq!(out.lines().count(), 1, "{out:?}");
        assert!(out.starts_with("<4>warning: skipped eve@example.com\\n<0>emerg"));
        // (tracing itself renders ESC as `\x1b`; either way it is inert text)
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.ends_with(": bad name\n"));
    }

    #[test]
    fn printable_text_is_kept_as_is() {
        let out = log_with_our_format(|| tracing::info!("zoë <alice@example.com> \"x\""));
        assert_eq!(out, "<6>info: zoë <alice@example.com> \"x\"\n");
        assert_eq!(escaped("a\tb\u{85}c"), "a\\tb\\u{85}c");
        // a right-to-left override and a zero-width space are shown, not obeyed
        assert_eq!(
            escaped("eve\u{202E}moc.elpmaxe\u{200B}@x\u{2028}"),
            "eve\\u{202e}moc.elpmaxe\\u{200b}@x\\u{2028}"
        );
        // tag characters (invisible ASCII), Hangul fillers, variation selectors
        for c in [
            '\u{E0041}',
            '\u{3164}',
            '\u{115F}',
            '\u{FE0F}',
            '\u{034F}',
            '\u{180B}',
        ] {
            assert!(is_deceptive(c), "{:?}", c.escape_unicode().to_string());
        }
        assert!(!is_deceptive('ë') && !is_deceptive('漢') && !is_deceptive(' '));
    }
}
