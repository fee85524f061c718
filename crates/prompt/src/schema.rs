//! The part of JSON Schema that output formats use: `type`, `properties`, `required`,
//! `additionalProperties: false`, `items`, `enum`, `minItems`/`maxItems`, `minLength`/`maxLength`,
//! `minimum`/`maximum`. A schema using other keywords is refused rather than half-checked.

use serde_json::{Map, Value};

const TYPES: &[&str] = &["object", "array", "string", "number", "integer", "boolean", "null"];
const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "description",
    "title",
    "$schema",
];

/// Checks a schema uses only what [`validate`] understands.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let object = schema.as_object().ok_or("a schema must be a JSON object")?;
    for key in object.keys() {
        if !KEYWORDS.contains(&key.as_str()) {
            return Err(format!("the keyword `{key}` is not supported; supported: {}", KEYWORDS.join(", ")));
        }
    }
    for name in types(object) {
        if !TYPES.contains(&name) {
            return Err(format!("unknown type `{name}`; the types are {}", TYPES.join(", ")));
        }
    }
    if let Some(properties) = object.get("properties") {
        let properties = properties.as_object().ok_or("`properties` must be an object")?;
        for (name, sub) in properties {
            check_schema(sub).map_err(|e| format!("properties.{name}: {e}"))?;
        }
    }
    if let Some(items) = object.get("items") {
        check_schema(items).map_err(|e| format!("items: {e}"))?;
    }
    Ok(())
}

/// Checks `value` against `schema`; the error names the path of the first mismatch (`$.tags[2]`).
pub fn validate(value: &Value, schema: &Value) -> Result<(), String> {
    validate_at(value, schema, "$")
}

fn validate_at(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else { return Ok(()) };
    let allowed: Vec<&str> = types(schema).collect();
    if !allowed.is_empty() && !allowed.iter().any(|t| has_type(value, t)) {
        return Err(format!("{path}: expected {}, found {}", allowed.join(" or "), describe(value)));
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        if !options.contains(value) {
            return Err(format!("{path}: {value} is not one of {}", Value::Array(options.clone())));
        }
    }
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    let check_count = |count: usize, what: &str, min: &str, max: &str| {
        if bound(min).is_some_and(|m| (count as f64) < m) || bound(max).is_some_and(|m| (count as f64) > m) {
            Err(format!("{path}: {count} {what}, outside the allowed range"))
        } else {
            Ok(())
        }
    };
    match value {
        Value::Object(fields) => validate_object(fields, schema, path),
        Value::Array(items) => {
            check_count(items.len(), "items", "minItems", "maxItems")?;
            match schema.get("items") {
                Some(item_schema) => items
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, item)| validate_at(item, item_schema, &format!("{path}[{i}]"))),
                None => Ok(()),
            }
        }
        Value::String(text) => check_count(text.chars().count(), "characters", "minLength", "maxLength"),
        Value::Number(n) => {
            let n = n.as_f64().unwrap_or(f64::NAN);
            if bound("minimum").is_some_and(|m| n < m) || bound("maximum").is_some_and(|m| n > m) {
                return Err(format!("{path}: {n} is outside the allowed range"));
            }
            Ok(())
        }
        Value::Bool(_) | Value::Null => Ok(()),
    }
}

fn validate_object(
    fields: &Map<String, Value>,
    schema: &Map<String, Value>,
    path: &str,
) -> Result<(), String> {
    let properties = schema.get("properties").and_then(Value::as_object);
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(name) {
                return Err(format!("{path}: the field `{name}` is missing"));
            }
        }
    }
    for (name, field) in fields {
        match properties.and_then(|p| p.get(name)) {
            Some(sub) => validate_at(field, sub, &format!("{path}.{name}"))?,
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                return Err(format!("{path}: the field `{name}` is not allowed"));
            }
            None => {}
        }
    }
    Ok(())
}

/// The type names a schema allows (`"type": "string"` or `"type": ["string", "null"]`).
fn types(schema: &Map<String, Value>) -> impl Iterator<Item = &str> {
    let list: Vec<&Value> = match schema.get("type") {
        Some(Value::Array(names)) => names.iter().collect(),
        Some(name) => vec![name],
        None => Vec::new(),
    };
    list.into_iter().map(|v| v.as_str().unwrap_or("(not a string)"))
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.as_f64().is_some_and(|n| n.fract() == 0.0),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

/// What kind of JSON value `value` is, for errors: `an object`, `a string`, `null`.
pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn person() -> Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "age": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}
            },
            "required": ["name"],
            "additionalProperties": false
        })
    }

    #[test]
    fn accepts_what_matches() {
        assert_eq!(validate(&json!({"name": "Ann", "age": 3, "tags": ["a"]}), &person()), Ok(()));
    }

    #[test]
    fn names_the_path_of_the_first_mismatch() {
        let err = |v: Value| validate(&v, &person()).unwrap_err();
        assert_eq!(err(json!({"age": 3})), "$: the field `name` is missing");
        assert_eq!(err(json!({"name": 3})), "$.name: expected string, found a number");
        assert_eq!(err(json!({"name": "A", "age": 1.5})), "$.age: expected integer, found a number");
        assert!(err(json!({"name": "A", "tags": ["c"]})).starts_with("$.tags[0]: \"c\" is not one of"));
        assert_eq!(err(json!({"name": "A", "x": 1})), "$: the field `x` is not allowed");
        assert_eq!(
            err(json!({"name": "A", "tags": ["a", "a", "b"]})),
            "$.tags: 3 items, outside the allowed range"
        );
        assert_eq!(err(json!([])), "$: expected object, found an array");
    }

    #[test]
    fn refuses_schemas_it_cannot_check() {
        assert!(check_schema(&person()).is_ok());
        assert!(check_schema(&json!({"oneOf": []})).unwrap_err().contains("`oneOf` is not supported"));
        assert!(check_schema(&json!({"properties": {"a": {"type": "text"}}}))
            .unwrap_err()
            .starts_with("properties.a: unknown type `text`"));
    }
}
