//! Reading a tool call's JSON arguments: every problem (not an object, a missing field, a
//! wrong type, a field the tool does not have) is a message for the model, never a panic.

use crate::tools::ToolName;
use serde_json::{Map, Value};

/// The arguments of one call, checked against the names its tool's schema declares.
#[derive(Debug)]
pub(super) struct Args<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Args<'a> {
    /// The arguments of `tool`; refuses non-objects and fields the schema does not list.
    pub(super) fn new(tool: ToolName, value: &'a Value) -> Result<Self, String> {
        let map = value.as_object().ok_or_else(|| format!("the arguments of {tool} must be a JSON object"))?;
        let definition = tool.definition();
        let known = definition.input_schema.get("properties").and_then(Value::as_object);
        if let Some(unknown) = map.keys().find(|k| !known.is_some_and(|p| p.contains_key(k.as_str()))) {
            let mut names: Vec<&str> = known.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
            names.sort_unstable();
            return Err(format!("{tool} has no argument {unknown:?} (it takes: {})", names.join(", ")));
        }
        Ok(Args { map })
    }

    /// A required string.
    pub(super) fn string(&self, name: &str) -> Result<&'a str, String> {
        self.opt_string(name)?.ok_or_else(|| format!("the argument {name:?} is missing"))
    }

    /// An optional string (`null` counts as absent).
    pub(super) fn opt_string(&self, name: &str) -> Result<Option<&'a str>, String> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("the argument {name:?} must be a string")),
        }
    }

    /// An optional non-negative integer (`null` counts as absent).
    pub(super) fn opt_u64(&self, name: &str) -> Result<Option<u64>, String> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                v.as_u64().map(Some).ok_or_else(|| format!("the argument {name:?} must be a non-negative integer"))
            }
        }
    }

    /// An optional boolean (`null` counts as absent).
    pub(super) fn opt_bool(&self, name: &str) -> Result<Option<bool>, String> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!("the argument {name:?} must be true or false")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_arguments_are_explained() {
        assert!(Args::new(ToolName::Exec, &json!("ls")).unwrap_err().contains("JSON object"));
        let e = Args::new(ToolName::Edit, &json!({"path": "a", "old_str": "x"})).unwrap_err();
        assert!(e.contains("\"old_str\"") && e.contains("old_string"), "{e}");
        let v = json!({"command": 5, "timeout_secs": -1});
        let a = Args::new(ToolName::Exec, &v).unwrap();
        assert!(a.string("command").unwrap_err().contains("must be a string"));
        assert!(a.opt_u64("timeout_secs").unwrap_err().contains("non-negative integer"));
        let v = json!({"path": null});
        let a = Args::new(ToolName::Ls, &v).unwrap();
        assert_eq!(a.opt_string("path").unwrap(), None);
        assert!(a.string("path").unwrap_err().contains("missing"));
    }
}
