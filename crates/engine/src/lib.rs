//! temper-engine
