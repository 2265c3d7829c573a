"""Per-segment customer-experience and retention metrics (DESIGN.md section 4), computed with
SQL aggregates in the database, plus holdout lift, the message funnel and cohort retention."""
