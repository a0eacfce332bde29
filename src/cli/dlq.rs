//! `eventyard dlq list|show|replay`: the dead letters a running router keeps, through its admin
//! API. Prints what the router answers; decides nothing itself.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::Failure;
use super::admin_api::{AdminApi, AdminArgs, text};

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List the newest dead letters, optionally only some.
    List {
        #[command(flatten)]
        pick: Pick,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print the router's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one dead letter with its event.
    Show {
        /// Its number (`seq`), as `list` shows it.
        seq: u64,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Send dead letters on again: back to the sink or route that gave up on them, or through
    /// `--route`. A replayed event keeps its id.
    Replay {
        /// Their numbers; or pick them with --from, --reason, --account.
        seqs: Vec<u64>,
        #[command(flatten)]
        pick: Pick,
        /// Through this route instead.
        #[arg(long)]
        route: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Which dead letters: by who gave up, why, and whose they are.
#[derive(Debug, Clone, Args)]
pub(crate) struct Pick {
    /// Given up by this sink or route.
    #[arg(long)]
    from: Option<String>,
    /// Whose reason contains this text.
    #[arg(long)]
    reason: Option<String>,
    /// Of this account.
    #[arg(long)]
    account: Option<String>,
}

pub(crate) async fn run(command: DlqCommand) -> Result<(), Failure> {
    match command {
        DlqCommand::List { pick, limit, json, admin } => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", &limit.to_string());
            for (name, value) in [("from", &pick.from), ("reason", &pick.reason), ("account", &pick.account)] {
                if let Some(value) = value {
                    query.append_pair(name, value);
                }
            }
            let listing = AdminApi::new(&admin)?.get(&format!("/v1/admin/dead-letters?{}", query.finish())).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&listing).unwrap_or_default());
            } else {
                print_listing(&listing);
            }
        }
        DlqCommand::Show { seq, admin } => {
            let letter = AdminApi::new(&admin)?.get(&format!("/v1/admin/dead-letters/{seq}")).await?;
            println!("{}", serde_json::to_string_pretty(&letter).unwrap_or_default());
        }
        DlqCommand::Replay { seqs, pick, route, admin } => {
            let request = json!({
                "seqs": seqs, "from": pick.from, "reason": pick.reason, "account": pick.account, "route": route,
            });
            let answer = AdminApi::new(&admin)?.post("/v1/admin/dead-letters/replay", &request).await?;
            let replayed = answer["replayed"].as_array().cloned().unwrap_or_default();
            let failed = replayed.iter().filter(|r| r.get("error").is_some()).count();
            for replay in &replayed {
                let outcome = replay["outcome"].as_str().map(str::to_owned);
                let outcome = outcome.unwrap_or_else(|| format!("not replayed: {}", text(&replay["error"])));
                println!("{:>6}  {}  {outcome}", replay["seq"], text(&replay["target"]));
            }
            println!("{} replayed, {failed} not", replayed.len() - failed);
            if failed > 0 {
                return Err(Failure::plugin(format!("{failed} dead letter(s) could not be replayed")));
            }
        }
    }
    Ok(())
}

fn print_listing(listing: &Value) {
    let letters = listing["dead_letters"].as_array().cloned().unwrap_or_default();
    println!("{:>6}  {:<20}  {:<16}  {:>8}  {:<24}  {:<36}  REASON", "SEQ", "AT", "FROM", "ATTEMPTS", "SUBJECT", "ID");
    for letter in &letters {
        let replays = letter["replays"].as_array().map_or(0, Vec::len);
        let replayed = if replays > 0 { format!(" (replayed {replays}x)") } else { String::new() };
        let at = text(&letter["at"]);
        println!(
            "{:>6}  {:<20}  {:<16}  {:>8}  {:<24}  {:<36}  {}{replayed}",
            letter["seq"],
            at.get(..19).unwrap_or(&at),
            text(&letter["from"]),
            letter["attempts"],
            text(&letter["subject"]),
            text(&letter["id"]),
            text(&letter["reason"]),
        );
    }
    println!(
        "{} shown of {} picked; the router holds {} ({} of {} bytes)",
        letters.len(),
        listing["total"],
        listing["held"],
        listing["bytes"],
        listing["max_bytes"]
    );
}
