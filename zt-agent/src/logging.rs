//! stderr logging that journald understands: each line starts with a syslog
//! priority (`<3>` error ... `<7>` debug), which journald turns into the
//! entry's priority (SyslogLevelPrefix=yes is its default).

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
        write!(w, "<{prio}>{word}: ")?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

pub fn init(verbose: bool) {
    let level = if verbose { Level::DEBUG } else { Level::INFO };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(SyslogPrefix)
        .try_init();
}
