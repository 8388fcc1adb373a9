"""Counterexamples of the line model (test_line_model.py), each replayed step by step as a plain
test: the same rules with the same arguments, every invariant checked after every step, exactly
as hypothesis runs them. Named for what broke; each failed on the code before its fix.
"""


def replay(machine, *steps):
    """Run (rule name, arguments) steps on the machine, checking every invariant after each one."""
    machine.check_all()
    for name, kwargs in steps:
        getattr(machine, name)(**kwargs)
        machine.check_all()


def test_an_unpaid_cycle_on_an_expired_line_does_not_send_a_second_suspend(line_machine):
    """The engine's payment suspension wrote `suspend` whatever the line's service was: an expired
    line (off since the sweep's `suspend`) was told twice. Fixed by routing it through
    line_status.suspend_line_for_payment, which compares the switches like every transition."""
    replay(
        line_machine,
        ("set_up", dict(policies=("block", "block"), remaining_mb=(600, 600), validity_days=(1, 10))),
        ("time_passes", dict(minutes=24 * 60)),
        ("expiry_sweep", {}),  # line 0 expired: `suspend` (validity ended)
        ("renewal_failed", dict(which=0)),  # suspended for non-payment: nothing new to say
        ("drain", {}),
        ("renewal_paid", dict(which=0)),  # `resume`
        ("drain", {}),
    )
