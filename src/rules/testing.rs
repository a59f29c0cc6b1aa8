//! `herald rules test`: placeholder, filled in below.
