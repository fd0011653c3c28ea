"""The system tier (seed 000 "Three-Tier Domain Separation"): `wcp360 agent`, root, the only
process that does privileged work, through a fixed set of typed verbs over a Unix socket."""
