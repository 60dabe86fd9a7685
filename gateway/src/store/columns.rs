//! How the domain's values ([`crate::model`]) are written to and read from sqlite columns: each
//! as the text its type spells, so the files written before these types existed read the same.
//!
//! A column whose text its type refuses is damaged data: reading its row fails with sqlx's
//! decode error, which carries the type's own words (what the text is and what was expected).

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Sqlite, Type};

use crate::model::{
    ActivitySource, ActivityState, AgentStatus, EventKind, EventResult, HostStatus, OperationKind,
    Outcome, Role, Step, Timestamp,
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
);
