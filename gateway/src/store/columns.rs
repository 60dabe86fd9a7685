//! How the domain's values ([`crate::model`]) are written to and read from sqlite columns: each
//! as the text its type spells, so the files written before these types existed read the same.
//!
//! A column whose text its type refuses is damaged data: reading its row fails with sqlx's
//! decode error, which carries the type's own words (what the text is and what was expected).

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Sqlite, Type};

use std::collections::BTreeMap;

use hostctl::api::CreateRequest;

use crate::model::{
    ActivitySource, ActivityState, AgentStatus, ChannelKind, EventKind, EventResult, HostStatus,
    OperationKind, Outcome, Role, Step, Timestamp,
};

/// Makes a type that is written as text (its `Display`) and read back from it (its `FromStr`)
/// a sqlite TEXT column.
macro_rules! text_column {
    ($($t:ty),* $(,)?) => {$(
        impl Type<Sqlite> for $t {
            fn type_info() -> SqliteTypeInfo {
                <str as Type<Sqlite>>::type_info()
            }
        }

        impl<'q> Encode<'q, Sqlite> for $t {
            fn encode_by_ref(
                &self,
                args: &mut Vec<SqliteArgumentValue<'q>>,
            ) -> Result<IsNull, BoxDynError> {
                <String as Encode<'q, Sqlite>>::encode(self.to_string(), args)
            }
        }

        impl<'r> Decode<'r, Sqlite> for $t {
            fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(<&str as Decode<'r, Sqlite>>::decode(value)?.parse::<$t>()?)
            }
        }
    )*};
}

text_column!(
    Timestamp,
    AgentStatus,
    ActivityState,
    ActivitySource,
    HostStatus,
    Role,
    OperationKind,
    Step,
    Outcome,
    EventKind,
    EventResult,
    ChannelKind,
);

/// A column of JSON text, read into the field it fills (`#[sqlx(try_from = "Json<T>")]`).
/// sqlx's own `json` attribute needs its `json` feature; this reads the same text with
/// serde_json, which the gateway has anyway, and says which value it could not read.
pub struct Json<T>(T);

impl<T> Type<Sqlite> for Json<T> {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }
}

impl<'r, T: serde::de::DeserializeOwned> Decode<'r, Sqlite> for Json<T> {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<'r, Sqlite>>::decode(value)?;
        Ok(Json(serde_json::from_str(text)?))
    }
}

/// The fields that hold JSON columns (one impl each: a blanket one would be an orphan).
macro_rules! json_field {
    ($($t:ty),* $(,)?) => {$(
        impl From<Json<$t>> for $t {
            fn from(json: Json<$t>) -> $t {
                json.0
            }
        }
    )*};
}

json_field!(Vec<String>, BTreeMap<String, String>, CreateRequest);
