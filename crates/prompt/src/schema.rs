//! Output schemas are JSON Schema (draft 2020-12 unless `$schema` names another), checked by the
//! `jsonschema` crate: the same schemas the local engine enforces while decoding, with every
//! keyword, formats included. References reach only inside the schema: nothing is fetched.

use serde_json::Value;

/// The schema compiled, or why it is not a schema, naming where (`/properties/age: …`).
fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !schema.is_object() {
        return Err("a schema must be a JSON object".into());
    }
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| at(e.instance_path().as_str(), &e))
}

/// Checks `schema` is a JSON Schema that can be validated against.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    compile(schema).map(drop)
}

/// Checks `value` against `schema`; the error names the JSON pointer of the first mismatch
/// (`/tags/2: "c" is not one of ["a","b"]`).
pub fn validate(value: &Value, schema: &Value) -> Result<(), String> {
    let validator = compile(schema)?;
    let first = validator.iter_errors(value).next().map(|error| at(error.instance_path().as_str(), &error));
    first.map_or(Ok(()), Err)
}

/// `message` at JSON pointer `path`, the root written `/`.
fn at(path: &str, message: &dyn std::fmt::Display) -> String {
    format!("{}: {message}", if path.is_empty() { "/" } else { path })
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
                "email": {"type": "string", "format": "email"},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
                "id": {"anyOf": [{"type": "string", "pattern": "^[A-Z]{2}[0-9]+$"}, {"type": "integer"}]}
            },
            "required": ["name"],
            "additionalProperties": false
        })
    }

    #[test]
    fn accepts_what_matches() {
        let value = json!({"name": "Ann", "age": 3, "tags": ["a"], "email": "ann@example.org", "id": "AB12"});
        assert_eq!(validate(&value, &person()), Ok(()));
        assert_eq!(validate(&json!({"name": "Ann", "id": 7}), &person()), Ok(()));
    }

    #[test]
    fn names_the_pointer_of_the_first_mismatch() {
        let err = |v: Value| validate(&v, &person()).unwrap_err();
        assert_eq!(err(json!({"age": 3})), r#"/: "name" is a required property"#);
        assert_eq!(err(json!({"name": 3})), r#"/name: 3 is not of type "string""#);
        assert!(err(json!({"name": "A", "age": 1.5})).starts_with("/age: 1.5 is not of type"));
        assert!(err(json!({"name": "A", "tags": ["c"]})).starts_with("/tags/0: \"c\" is not one of"));
        assert!(
            err(json!({"name": "A", "x": 1})).contains("'x' was unexpected"),
            "{}",
            err(json!({"name": "A", "x": 1}))
        );
        assert!(err(json!({"name": "A", "tags": ["a", "a", "b"]})).starts_with("/tags: "));
        assert!(err(json!({"name": "A", "email": "not an address"})).starts_with("/email: "));
        assert!(err(json!({"name": "A", "id": "ab"})).starts_with("/id: "));
        assert_eq!(err(json!([])), r#"/: [] is not of type "object""#);
    }

    #[test]
    fn refuses_what_is_not_a_schema_and_says_where() {
        assert!(check_schema(&person()).is_ok());
        assert!(check_schema(&json!({"oneOf": [{"type": "string"}]})).is_ok());
        let err = check_schema(&json!({"properties": {"a": {"type": "text"}}})).unwrap_err();
        assert!(err.contains("/properties/a/type") && err.contains("text"), "{err}");
        assert_eq!(check_schema(&json!([1])).unwrap_err(), "a schema must be a JSON object");
    }
}
