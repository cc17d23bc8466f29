//! Name conversions.

/// `create_user` → `create-user`; `LightSwitch` → `light-switch`.
pub(crate) fn kebab(name: &str) -> String {
    let name = name.trim_start_matches("r#").trim_matches('_');
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '_' {
            if !out.ends_with('-') {
                out.push('-');
            }
            prev_lower = false;
        } else if c.is_uppercase() {
            if prev_lower && !out.ends_with('-') {
                out.push('-');
            }
            out.extend(c.to_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

/// `user-created` → `USER_CREATED`.
pub(crate) fn screaming(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_cases() {
        assert_eq!(kebab("create_user"), "create-user");
        assert_eq!(kebab("LightSwitch"), "light-switch");
        assert_eq!(kebab("r#type"), "type");
        assert_eq!(kebab("v2_upgrade"), "v2-upgrade");
        assert_eq!(screaming("user-created"), "USER_CREATED");
    }
}
