//! temper-models
