//! `eventyard top`: a live terminal view of a running router (routes, sinks and their queues,
//! plugins, the gateway, dead letters and the latest reloads), from its admin snapshot every
//! interval. Rates are the difference between two snapshots. Works over ssh; `q` quits. Reads
//! only: it changes nothing in the router.

use std::collections::HashMap;
use std::io::Stdout;
use std::time::{Duration, Instant};

use clap::Args;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event as Input, KeyCode, KeyModifiers};
use ratatui::crossterm::{execute, terminal};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use serde_json::Value;

use super::Failure;
use super::admin_api::{AdminApi, AdminArgs, text};
use crate::telemetry::metrics::CallTimes;

#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// How often to refresh, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

pub(crate) async fn run(args: TopArgs) -> Result<(), Failure> {
    let api = AdminApi::new(&args.admin)?;
    // Fails here, before the screen is taken, when the router is unreachable or refuses.
    let first = api.get("/v1/admin/snapshot").await?;
    let mut terminal = Screen::open().map_err(|err| Failure::input(format!("cannot use the terminal: {err}")))?;
    let interval = Duration::from_millis(args.interval_ms.max(100));
    let (mut previous, mut taken) = (first.clone(), Instant::now());
    let mut view = View::new(api.url(), &first, &first, 0.0, None);
    loop {
        if let Err(err) = terminal.0.draw(|frame| view.draw(frame)) {
            return Err(Failure::input(format!("cannot draw: {err}")));
        }
        if quit_within(interval) {
            return Ok(());
        }
        let (current, error) = match api.get("/v1/admin/snapshot").await {
            Ok(current) => (current, None),
            Err(failure) => (previous.clone(), Some(failure.message)),
        };
        let seconds = taken.elapsed().as_secs_f64();
        view = View::new(api.url(), &previous, &current, seconds, error);
        (previous, taken) = (current, Instant::now());
    }
}

/// True when `q`, Esc or Ctrl-C is pressed within `wait`.
fn quit_within(wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if !event::poll(left.min(Duration::from_millis(50))).unwrap_or(false) {
            continue;
        }
        if let Ok(Input::Key(key)) = event::read() {
            let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                return true;
            }
        }
    }
    false
}

/// The terminal in raw mode on its alternate screen, given back as it was when dropped.
struct Screen(Terminal<CrosstermBackend<Stdout>>);

impl Screen {
    fn open() -> std::io::Result<Screen> {
        terminal::enable_raw_mode()?;
        let mut stdout = std::io::stdout();
        execute!(stdout, terminal::EnterAlternateScreen)?;
        Ok(Screen(Terminal::new(CrosstermBackend::new(stdout))?))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(self.0.backend_mut(), terminal::LeaveAlternateScreen);
        let _ = self.0.show_cursor();
    }
}

/// A counter of `current`'s entry per second since the same entry of `previous`.
struct Rates<'a> {
    previous: HashMap<&'a str, &'a Value>,
    seconds: f64,
}

impl<'a> Rates<'a> {
    fn new(previous: &'a Value, list: &str, seconds: f64) -> Rates<'a> {
        let entries = previous[list].as_array().map(Vec::as_slice).unwrap_or_default();
        Rates {
            previous: entries.iter().map(|entry| (entry["name"].as_str().unwrap_or_default(), entry)).collect(),
            seconds,
        }
    }

    /// `pointer` (a JSON pointer) of `entry`, per second.
    fn per_second(&self, entry: &Value, pointer: &str) -> f64 {
        let now = entry.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
        let name = entry["name"].as_str().unwrap_or_default();
        let before = self.previous.get(name).and_then(|e| e.pointer(pointer)).and_then(Value::as_u64).unwrap_or(now);
        if self.seconds > 0.0 { now.saturating_sub(before) as f64 / self.seconds } else { 0.0 }
    }

    /// The p99 call time of the calls made since the previous snapshot, in microseconds.
    fn window_p99(&self, plugin: &Value) -> Option<u64> {
        let buckets = |p: &Value| -> Vec<u64> {
            p.pointer("/stats/call_micros_buckets")
                .and_then(Value::as_array)
                .map(|b| b.iter().map(|c| c.as_u64().unwrap_or(0)).collect())
                .unwrap_or_default()
        };
        let now = buckets(plugin);
        let name = plugin["name"].as_str().unwrap_or_default();
        let before = self.previous.get(name).map(|p| buckets(p)).unwrap_or_default();
        let window: Vec<u64> =
            now.iter().enumerate().map(|(at, n)| n.saturating_sub(before.get(at).copied().unwrap_or(0))).collect();
        CallTimes::quantile(&window, 0.99)
    }
}

fn count(value: &Value) -> String {
    value.as_u64().map_or_else(|| "-".into(), |n| n.to_string())
}

fn rate(value: f64) -> String {
    if value >= 10_000.0 { format!("{:.1}k", value / 1000.0) } else { format!("{value:.0}") }
}

fn bytes(value: &Value) -> String {
    let n = value.as_u64().unwrap_or(0) as f64;
    match n {
        n if n >= (1u64 << 30) as f64 => format!("{:.1}GiB", n / (1u64 << 30) as f64),
        n if n >= (1 << 20) as f64 => format!("{:.1}MiB", n / (1 << 20) as f64),
        n if n >= 1024.0 => format!("{:.1}KiB", n / 1024.0),
        n => format!("{n}B"),
    }
}

/// What one frame shows: the snapshot's figures as table rows.
struct View {
    title: String,
    routes: Vec<Vec<String>>,
    sinks: Vec<Vec<String>>,
    plugins: Vec<Vec<String>>,
    footer: Vec<String>,
}

impl View {
    fn new(url: &str, previous: &Value, current: &Value, seconds: f64, error: Option<String>) -> View {
        let list = |name: &str| current[name].as_array().cloned().unwrap_or_default();
        let routes_rate = Rates::new(previous, "routes", seconds);
        let routes = list("routes")
            .iter()
            .map(|r| {
                vec![
                    text(&r["name"]),
                    text(&r["subject"]),
                    rate(routes_rate.per_second(r, "/matched")),
                    rate(routes_rate.per_second(r, "/forwarded")),
                    rate(routes_rate.per_second(r, "/filtered")),
                    count(&r["handler_failures"]),
                    count(&r["dead_lettered"]),
                ]
            })
            .collect();
        let sinks_rate = Rates::new(previous, "sinks", seconds);
        let sinks = list("sinks")
            .iter()
            .map(|s| {
                let q = &s["queue"];
                vec![
                    text(&s["name"]),
                    rate(sinks_rate.per_second(s, "/delivered")),
                    format!("{}/{}", count(&q["depth"]), count(&q["capacity"])),
                    bytes(&q["bytes"]),
                    count(&q["dropped"]),
                    count(&s["failed_attempts"]),
                    count(&s["dead_lettered"]),
                    s["last_error"]["error"].as_str().unwrap_or("").to_owned(),
                ]
            })
            .collect();
        let plugins_rate = Rates::new(previous, "plugins", seconds);
        let plugins = list("plugins")
            .iter()
            .map(|p| {
                let p99 = plugins_rate.window_p99(p).or(p["stats"]["p99_micros"].as_u64());
                vec![
                    text(&p["name"]),
                    text(&p["world"]),
                    count(&p["generation"]),
                    rate(plugins_rate.per_second(p, "/stats/calls")),
                    count(&p["stats"]["errors"]),
                    count(&p["stats"]["faults"]),
                    p99.map_or_else(|| "-".into(), |us| format!("≤{us}µs")),
                    count(&p["stats"]["quarantines"]),
                ]
            })
            .collect();
        let mut footer = Vec::new();
        if let Some(gateway) = current["gateway"].as_object() {
            let in_rate = previous["gateway"]["in_msgs"].as_u64().zip(gateway["in_msgs"].as_u64());
            let in_rate =
                in_rate.map_or(0.0, |(a, b)| if seconds > 0.0 { b.saturating_sub(a) as f64 / seconds } else { 0.0 });
            footer.push(format!(
                "gateway: {} connections, {} msgs/s in",
                count(&gateway["connections"]),
                rate(in_rate)
            ));
        }
        let dl = &current["dead_letters"];
        if dl.is_object() {
            footer.push(format!(
                "dead letters: {} held ({}), {} replayed, {} evicted",
                count(&dl["held"]),
                bytes(&dl["bytes"]),
                count(&dl["replayed"]),
                count(&dl["evicted"])
            ));
        }
        let queues = &current["queues"];
        footer.push(format!("queues: {} of {}", bytes(&queues["bytes"]), bytes(&queues["capacity_bytes"])));
        for report in current["reloads"].as_array().map(Vec::as_slice).unwrap_or_default().iter().take(3) {
            let what = report["plugin"].as_str().map_or_else(|| "config".to_owned(), |p| format!("plugin {p}"));
            let change = report["change"].as_str().unwrap_or("reload");
            let generations = format!("{}→{}", count(&report["old_generation"]), count(&report["new_generation"]));
            let result = text(&report["result"]);
            footer.push(format!("reload {}: {what} {change} {result} (generation {generations})", text(&report["at"])));
        }
        if let Some(error) = error {
            footer.push(format!("last refresh failed: {error}"));
        }
        let uptime = current["uptime_seconds"].as_f64().unwrap_or(0.0) as u64;
        let title = format!(
            " eventyard {} · {url} · up {}h{:02}m{:02}s · q quits ",
            text(&current["version"]),
            uptime / 3600,
            uptime / 60 % 60,
            uptime % 60
        );
        View { title, routes, sinks, plugins, footer }
    }

    fn draw(&self, frame: &mut ratatui::Frame) {
        let height = |rows: usize| Constraint::Length(rows as u16 + 3);
        let areas = Layout::vertical([
            height(self.routes.len()),
            height(self.sinks.len()),
            height(self.plugins.len()),
            Constraint::Min(self.footer.len() as u16 + 2),
        ])
        .split(frame.area());
        fn table<'a>(title: &str, header: &[&'a str], rows: &'a [Vec<String>], widths: &[u16]) -> Table<'a> {
            let header = Row::new(header.iter().map(|h| Cell::from(*h)))
                .style(Style::default().add_modifier(Modifier::BOLD).fg(Color::Cyan));
            let rows = rows.iter().map(|row| Row::new(row.iter().map(|c| Cell::from(c.as_str()))));
            Table::new(rows, widths.iter().map(|w| Constraint::Min(*w)))
                .header(header)
                .block(Block::default().borders(Borders::ALL).title(title.to_owned()))
        }
        let route_header = ["ROUTE", "SUBJECT", "MATCHED/S", "FORWARDED/S", "FILTERED/S", "FAILURES", "DEAD"];
        frame.render_widget(table(&self.title, &route_header, &self.routes, &[12, 16, 10, 12, 11, 9, 6]), areas[0]);
        let sink_header = ["SINK", "DELIVERED/S", "QUEUE", "BYTES", "DROPPED", "RETRIES", "DEAD", "LAST ERROR"];
        frame.render_widget(table(" sinks ", &sink_header, &self.sinks, &[12, 12, 12, 9, 8, 8, 6, 20]), areas[1]);
        let plugin_header = ["PLUGIN", "WORLD", "GEN", "CALLS/S", "ERRORS", "FAULTS", "P99", "QUARANTINED"];
        frame.render_widget(table(" plugins ", &plugin_header, &self.plugins, &[14, 10, 4, 9, 7, 7, 9, 11]), areas[2]);
        let footer: Vec<Line> = self.footer.iter().map(|line| Line::from(line.as_str())).collect();
        frame.render_widget(Paragraph::new(footer).block(Block::default().borders(Borders::ALL)), areas[3]);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rates_and_the_window_p99_come_from_two_snapshots() {
        let snapshot = |matched: u64, calls: u64, buckets: Vec<u64>| {
            json!({
                "routes": [{"name": "orders", "subject": "orders.>", "matched": matched, "forwarded": matched,
                            "filtered": 0, "handler_failures": 0, "dead_lettered": 0}],
                "plugins": [{"name": "f", "world": "handler", "generation": 1,
                             "stats": {"calls": calls, "errors": 0, "faults": 0, "quarantines": 0,
                                       "call_micros_buckets": buckets, "p99_micros": 1}}],
                "sinks": [], "queues": {}, "reloads": [], "version": "0.1.0", "uptime_seconds": 61.0,
            })
        };
        let before = snapshot(100, 100, vec![100, 0, 0, 0]);
        let after = snapshot(300, 200, vec![100, 0, 0, 100]);
        let view = View::new("http://x", &before, &after, 2.0, None);
        assert_eq!(view.routes[0][2], "100", "200 more events in 2 s");
        assert_eq!(view.plugins[0][3], "50");
        assert_eq!(view.plugins[0][6], "≤8µs", "the window's calls all took 4-8 µs");
        assert!(view.title.contains("up 0h01m01s"), "{}", view.title);
    }
}
