"""Database triggers that keep Line.renew_below_bytes / renew_hours_before_expiry equal to the line's
enabled rule's triggers, whatever writes the rule: the rule service, the admin (bulk edits use
`update()`, which no signal sees), an import, a fixture or raw SQL. The truth is computed in one
place, the trigger on the line's two columns; a rule write only touches those columns on the lines
it concerns, which makes the line's trigger recompute them. A stale `Line.save()` (it writes every
column) therefore cannot put an old threshold back either.

PostgreSQL uses statement-level rule triggers (one UPDATE per statement, so bulk loads stay fast);
SQLite (`make run`) gets row-level equivalents.
"""

from django.db import migrations

POSTGRESQL_FORWARD = [
    """
    CREATE FUNCTION accounts_line_renewal_trigger_copies() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.renew_below_bytes := NULL;
        NEW.renew_hours_before_expiry := NULL;
        SELECT CASE WHEN r.enabled THEN r.trigger_data_below_mb::bigint * 1048576 END,
               CASE WHEN r.enabled THEN r.trigger_hours_before_expiry END
          INTO NEW.renew_below_bytes, NEW.renew_hours_before_expiry
          FROM renewals_renewalrule r WHERE r.line_id = NEW.id;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER accounts_line_renewal_trigger_copies
    BEFORE UPDATE OF renew_below_bytes, renew_hours_before_expiry ON accounts_line
    FOR EACH ROW EXECUTE FUNCTION accounts_line_renewal_trigger_copies()
    """,
    """
    CREATE FUNCTION renewals_rule_touch_lines() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE accounts_line SET renew_below_bytes = NULL WHERE id IN (SELECT line_id FROM new_rules);
        ELSIF TG_OP = 'DELETE' THEN
            UPDATE accounts_line SET renew_below_bytes = NULL WHERE id IN (SELECT line_id FROM old_rules);
        ELSE
            UPDATE accounts_line SET renew_below_bytes = NULL
             WHERE id IN (SELECT line_id FROM new_rules UNION SELECT line_id FROM old_rules);
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER renewals_rule_insert_touches_lines AFTER INSERT ON renewals_renewalrule
    REFERENCING NEW TABLE AS new_rules FOR EACH STATEMENT EXECUTE FUNCTION renewals_rule_touch_lines()
    """,
    """
    CREATE TRIGGER renewals_rule_update_touches_lines AFTER UPDATE ON renewals_renewalrule
    REFERENCING OLD TABLE AS old_rules NEW TABLE AS new_rules FOR EACH STATEMENT EXECUTE FUNCTION renewals_rule_touch_lines()
    """,
    """
    CREATE TRIGGER renewals_rule_delete_touches_lines AFTER DELETE ON renewals_renewalrule
    REFERENCING OLD TABLE AS old_rules FOR EACH STATEMENT EXECUTE FUNCTION renewals_rule_touch_lines()
    """,
]
POSTGRESQL_BACKWARD = [
    "DROP TRIGGER IF EXISTS renewals_rule_insert_touches_lines ON renewals_renewalrule",
    "DROP TRIGGER IF EXISTS renewals_rule_update_touches_lines ON renewals_renewalrule",
    "DROP TRIGGER IF EXISTS renewals_rule_delete_touches_lines ON renewals_renewalrule",
    "DROP FUNCTION IF EXISTS renewals_rule_touch_lines()",
    "DROP TRIGGER IF EXISTS accounts_line_renewal_trigger_copies ON accounts_line",
    "DROP FUNCTION IF EXISTS accounts_line_renewal_trigger_copies()",
]

# SQLite cannot assign NEW: the line's trigger writes the row again (recursive triggers are off,
# so that write does not fire it once more).
SQLITE_FORWARD = [
    """
    CREATE TRIGGER accounts_line_renewal_trigger_copies
    AFTER UPDATE OF renew_below_bytes, renew_hours_before_expiry ON accounts_line
    BEGIN
        UPDATE accounts_line SET
            renew_below_bytes = (SELECT CASE WHEN r.enabled THEN r.trigger_data_below_mb * 1048576 END
                                   FROM renewals_renewalrule r WHERE r.line_id = NEW.id),
            renew_hours_before_expiry = (SELECT CASE WHEN r.enabled THEN r.trigger_hours_before_expiry END
                                           FROM renewals_renewalrule r WHERE r.line_id = NEW.id)
        WHERE id = NEW.id;
    END
    """,
    """
    CREATE TRIGGER renewals_rule_insert_touches_lines AFTER INSERT ON renewals_renewalrule
    BEGIN UPDATE accounts_line SET renew_below_bytes = NULL WHERE id = NEW.line_id; END
    """,
    """
    CREATE TRIGGER renewals_rule_update_touches_lines AFTER UPDATE ON renewals_renewalrule
    BEGIN UPDATE accounts_line SET renew_below_bytes = NULL WHERE id IN (OLD.line_id, NEW.line_id); END
    """,
    """
    CREATE TRIGGER renewals_rule_delete_touches_lines AFTER DELETE ON renewals_renewalrule
    BEGIN UPDATE accounts_line SET renew_below_bytes = NULL WHERE id = OLD.line_id; END
    """,
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS renewals_rule_insert_touches_lines",
    "DROP TRIGGER IF EXISTS renewals_rule_update_touches_lines",
    "DROP TRIGGER IF EXISTS renewals_rule_delete_touches_lines",
    "DROP TRIGGER IF EXISTS accounts_line_renewal_trigger_copies",
]

# Existing rules: touching their lines makes the line's trigger fill the copies in.
BACKFILL = "UPDATE accounts_line SET renew_below_bytes = NULL WHERE id IN (SELECT line_id FROM renewals_renewalrule)"


def _run(schema_editor, statements) -> None:
    for statement in statements:
        schema_editor.execute(statement)


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, POSTGRESQL_FORWARD + [BACKFILL])
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE_FORWARD + [BACKFILL])
    else:
        raise RuntimeError(f"no renewal trigger copies for database {vendor}")


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    _run(schema_editor, POSTGRESQL_BACKWARD if vendor == "postgresql" else SQLITE_BACKWARD)
    schema_editor.execute("UPDATE accounts_line SET renew_below_bytes = NULL, renew_hours_before_expiry = NULL")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_line_renewal_trigger_copies"),
        ("renewals", "0003_rule_expiry_window_index"),
    ]

    operations = [migrations.RunPython(forward, backward)]
