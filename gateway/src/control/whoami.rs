//! `whoami [--json]`: the operator, role and key of this connection.

use super::output::{WhoamiJson, json_text, to_json};
use super::{Caller, CommandIo, CommandResult, JsonArg, exit};

pub async fn run(caller: &Caller, args: JsonArg, io: &mut CommandIo) -> CommandResult {
    let text = if args.json {
        json_text(&to_json(&WhoamiJson {
            operator: &caller.operator.name,
            role: caller.operator.role,
            key: &caller.key_fingerprint,
            source: &caller.source,
        }))
    } else {
        format!(
            "operator: {}\nrole:     {}\nkey:      {}\nsource:   {}\n",
            caller.operator.name,
            caller.operator.role.as_str(),
            caller.key_fingerprint,
            caller.source
        )
    };
    io.write_out(&text).await;
    Ok(exit::OK)
}
