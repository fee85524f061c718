//! Picks the next token from a model's logits.
//!
//! The chain follows llama.cpp: penalties → top-k → top-p → min-p → temperature → draw.
//! The filters run on a short candidate list rather than on a sorted copy of the whole
//! vocabulary, because vocabularies reach 262k tokens and a token is sampled on every step.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use temper_core::GenerationParams;

/// How many of the most recent tokens the repeat, frequency and presence penalties look at.
pub const PENALTY_WINDOW: usize = 64;

/// The sampling settings in effect: each field of [`GenerationParams`] or its default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerSettings {
    /// 0 (or less) is greedy decoding.
    pub temperature: f32,
    /// 0 keeps every token.
    pub top_k: u32,
    /// 1 keeps every token.
    pub top_p: f32,
    /// 0 keeps every token.
    pub min_p: f32,
    /// 1 is off.
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
}

impl SamplerSettings {
    /// The values used for parameters that are not set, as in llama.cpp.
    pub const DEFAULT: SamplerSettings = SamplerSettings {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.0,
        frequency_penalty: 0.0,
        presence_penalty: 0.0,
    };

    /// The settings `params` asks for, with defaults for what it leaves unset.
    pub fn resolve(params: &GenerationParams) -> SamplerSettings {
        let default = SamplerSettings::DEFAULT;
        SamplerSettings {
            temperature: params.temperature.unwrap_or(default.temperature),
            top_k: params.top_k.unwrap_or(default.top_k),
            top_p: params.top_p.unwrap_or(default.top_p),
            min_p: params.min_p.unwrap_or(default.min_p),
            repeat_penalty: params.repeat_penalty.unwrap_or(default.repeat_penalty),
            frequency_penalty: params.frequency_penalty.unwrap_or(default.frequency_penalty),
            presence_penalty: params.presence_penalty.unwrap_or(default.presence_penalty),
        }
    }
}

/// Draws tokens from logits.
///
/// With a seed, the same seed, parameters, logits and history give the same token, draw after
/// draw, for a given build (the random generator may change between versions of `rand`).
/// Without a seed the generator is seeded from the operating system's entropy.
pub struct Sampler {
    settings: SamplerSettings,
    rng: StdRng,
    /// Reused between calls so sampling does not allocate on every step.
    candidates: Vec<Candidate>,
    recent: Vec<u32>,
    /// The logits the penalties changed, as they were, to put back after the draw.
    penalized: Vec<(u32, f32)>,
}

/// A token id and its logit, later its unnormalised probability.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    pub id: u32,
    pub value: f32,
}

impl Sampler {
    pub fn new(params: &GenerationParams) -> Sampler {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        Sampler {
            settings: SamplerSettings::resolve(params),
            rng,
            candidates: Vec::new(),
            recent: Vec::new(),
            penalized: Vec::new(),
        }
    }

    /// The next token. `history` is the prompt and the tokens generated so far. `logits` is
    /// left as it was, except that NaN becomes -inf and +inf the largest finite value, so the
    /// caller can still read the model's own distribution from it. If no logit is finite the
    /// first token id wins, as for an empty vocabulary, which returns 0.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        sanitize(logits);
        self.apply_penalties(logits, history);
        let token = self.pick(logits);
        for &(id, logit) in &self.penalized {
            logits[id as usize] = logit;
        }
        token
    }

    /// The token drawn from `logits` (sanitized, penalties applied).
    fn pick(&mut self, logits: &[f32]) -> u32 {
        let max = max_of(logits);
        let argmax = || logits.iter().position(|&x| x == max).unwrap_or(0) as u32;
        let temperature = self.settings.temperature;
        if temperature.is_nan() || temperature <= 0.0 || max == f32::NEG_INFINITY {
            return argmax();
        }
        let min_p = if self.settings.min_p > 0.0 { self.settings.min_p.min(1.0) } else { 0.0 };
        // min-p keeps p ≥ min_p·p_max, that is logit ≥ max + ln(min_p). When it is off the bar
        // is the lowest finite value, which still leaves out the -inf of masked tokens.
        let min_logit = if min_p > 0.0 { max + min_p.ln() } else { f32::MIN };
        let top_p = self.settings.top_p;
        let top_k = self.settings.top_k as usize;

        if top_k > 0 && top_k < logits.len() {
            gather(logits, f32::MIN, Some(top_k), &mut self.candidates);
            sort_descending(&mut self.candidates);
            if top_p < 1.0 {
                let total = lane_sum(&self.candidates, |c| exp_nonpositive(c.value - max));
                truncate_to_nucleus(&mut self.candidates, max, total * top_p);
            }
            self.candidates.retain(|c| c.value >= min_logit);
        } else {
            // min-p is a threshold, so applying it first keeps the list short; top-p then cuts
            // a prefix of the same sorted order, normalised over the whole vocabulary.
            gather(logits, min_logit, None, &mut self.candidates);
            if top_p < 1.0 {
                let total = lane_sum(logits, |&x| exp_nonpositive(x - max));
                drop_outside_nucleus(&mut self.candidates, max, total * top_p);
                sort_descending(&mut self.candidates);
                truncate_to_nucleus(&mut self.candidates, max, total * top_p);
            }
        }
        self.draw(max, temperature).unwrap_or_else(argmax)
    }

    /// llama.cpp's repeat penalty, then OpenAI's frequency and presence penalties, for each
    /// distinct token among the last [`PENALTY_WINDOW`] of `history`; the logits they change are
    /// kept in `penalized`.
    fn apply_penalties(&mut self, logits: &mut [f32], history: &[u32]) {
        self.penalized.clear();
        let SamplerSettings { repeat_penalty, frequency_penalty, presence_penalty, .. } = self.settings;
        if repeat_penalty == 1.0 && frequency_penalty == 0.0 && presence_penalty == 0.0 {
            return;
        }
        self.recent.clear();
        self.recent.extend_from_slice(&history[history.len().saturating_sub(PENALTY_WINDOW)..]);
        self.recent.sort_unstable();
        for run in self.recent.chunk_by(|a, b| a == b) {
            let Some(logit) = logits.get_mut(run[0] as usize) else { continue };
            self.penalized.push((run[0], *logit));
            // Dividing a negative logit would raise it, so it is multiplied instead.
            if *logit > 0.0 {
                *logit /= repeat_penalty;
            } else {
                *logit *= repeat_penalty;
            }
            *logit -= run.len() as f32 * frequency_penalty + presence_penalty;
        }
    }

    /// Applies the temperature to the remaining candidates and draws one.
    fn draw(&mut self, max: f32, temperature: f32) -> Option<u32> {
        for candidate in &mut self.candidates {
            candidate.value = exp_nonpositive((candidate.value - max) / temperature);
        }
        let total = lane_sum(&self.candidates, |c| c.value);
        let mut target = self.rng.gen::<f32>() * total;
        for candidate in &self.candidates {
            if target < candidate.value {
                return Some(candidate.id);
            }
            target -= candidate.value;
        }
        // Rounding can leave `target` just past the sum; the last candidate takes it.
        self.candidates.last().map(|c| c.id)
    }
}

/// Replaces NaN with -inf and +inf with the largest finite value, so that `x - max` is never NaN.
fn sanitize(logits: &mut [f32]) {
    for logit in logits {
        *logit = if logit.is_nan() { f32::NEG_INFINITY } else { logit.min(f32::MAX) };
    }
}

/// Whether every value is finite: `0·x` is 0 for a finite x and NaN for an infinity or a NaN,
/// so one vectorized sum says it.
pub(crate) fn all_finite(values: &[f32]) -> bool {
    lane_sum(values, |&x| 0.0 * x) == 0.0
}

/// The largest value (-inf for none). Eight independent lanes let the compiler vectorize it.
pub(crate) fn max_of(values: &[f32]) -> f32 {
    let larger = |a: f32, b: f32| if b > a { b } else { a };
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut octets = values.chunks_exact(8);
    for octet in &mut octets {
        for (lane, &value) in lanes.iter_mut().zip(octet) {
            *lane = larger(*lane, value);
        }
    }
    octets.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |a, &b| larger(a, b))
}

/// The sum of `term` over `items`, in eight independent lanes so the compiler can vectorize it
/// (it may not reorder a single running float sum).
pub(crate) fn lane_sum<T>(items: &[T], term: impl Fn(&T) -> f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut octets = items.chunks_exact(8);
    for octet in &mut octets {
        for (lane, item) in lanes.iter_mut().zip(octet) {
            *lane += term(item);
        }
    }
    octets.remainder().iter().map(&term).sum::<f32>() + lanes.iter().sum::<f32>()
}

/// e^x for x ≤ 0, vectorizable, within about 2e-7 relative error; below -87 it gives about 1e-38
/// instead of 0. x = n·ln2 + r with |r| ≤ ln2/2, so e^x = 2^n · e^r, e^r by its Taylor series.
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    // Adding 1.5·2^23 rounds to an integer and leaves it in the low mantissa bits, which avoids
    // float-to-int conversions that do not vectorize.
    const ROUND: f32 = 12_582_912.0;
    // ln2 in two parts keeps r accurate: n·LN2_HIGH is exact in f32.
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 0.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let e_r =
        1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
    let biased_exponent = shifted.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    e_r * f32::from_bits(biased_exponent << 23)
}

/// Highest logit first; ties go to the lower token id so the order does not depend on the input order.
fn by_descending_logit(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.value.total_cmp(&a.value).then(a.id.cmp(&b.id))
}

pub(crate) fn sort_descending(candidates: &mut [Candidate]) {
    candidates.sort_unstable_by(by_descending_logit);
}

/// Fills `out` with the tokens whose logit is at least `at_least`, in no particular order, or
/// with `limit` k ≥ 1 only the best k of them. For the best k, tokens are gathered into a buffer
/// of 2k that is cut back to k when full, which raises the bar to the k-th best logit so far.
/// Whole chunks below the bar are skipped after one vectorized maximum.
pub(crate) fn gather(logits: &[f32], at_least: f32, limit: Option<usize>, out: &mut Vec<Candidate>) {
    const CHUNK: usize = 64;
    out.clear();
    let mut bar = at_least;
    for (first_id, chunk) in (0u32..).step_by(CHUNK).zip(logits.chunks(CHUNK)) {
        if max_of(chunk) < bar {
            continue;
        }
        for (id, &value) in (first_id..).zip(chunk) {
            if value < bar {
                continue;
            }
            out.push(Candidate { id, value });
            if let Some(k) = limit.filter(|&k| out.len() >= 2 * k) {
                keep_best(out, k);
                bar = out[k - 1].value;
            }
        }
    }
    if let Some(k) = limit.filter(|&k| out.len() > k) {
        keep_best(out, k);
    }
}

/// Keeps the best `k` (1 ≤ k < len) candidates, with the k-th best last.
fn keep_best(candidates: &mut Vec<Candidate>, k: usize) {
    candidates.select_nth_unstable_by(k - 1, by_descending_logit);
    candidates.truncate(k);
}

/// Keeps the shortest prefix of `sorted` whose mass (`e^(logit - max)`) reaches `needed`, and at
/// least one token.
fn truncate_to_nucleus(sorted: &mut Vec<Candidate>, max: f32, needed: f32) {
    let mut mass = 0.0f32;
    for (index, candidate) in sorted.iter().enumerate() {
        mass += exp_nonpositive(candidate.value - max);
        if mass >= needed {
            sorted.truncate(index + 1);
            return;
        }
    }
}

/// Drops candidates that cannot be in the nucleus, so that sorting it is cheap: the nucleus lies
/// among the tokens above the highest bar whose tokens together reach `needed`. Bars are tried
/// at doubling distances below the maximum; if none suffices every candidate stays.
fn drop_outside_nucleus(candidates: &mut Vec<Candidate>, max: f32, needed: f32) {
    for depth in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0] {
        let bar = max - depth;
        let mass =
            lane_sum(candidates, |c| if c.value >= bar { exp_nonpositive(c.value - max) } else { 0.0 });
        if mass >= needed {
            candidates.retain(|c| c.value >= bar);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the filters a test names are on; temperature 1 and a fixed seed.
    fn params(adjust: impl FnOnce(&mut GenerationParams)) -> GenerationParams {
        let mut params = GenerationParams {
            temperature: Some(1.0),
            top_k: Some(0),
            top_p: Some(1.0),
            min_p: Some(0.0),
            seed: Some(7),
            ..Default::default()
        };
        adjust(&mut params);
        params
    }

    fn logits_of(probabilities: &[f32]) -> Vec<f32> {
        probabilities.iter().map(|p| p.ln()).collect()
    }

    /// How often each token is drawn, as a fraction of `draws`.
    fn frequencies(params: &GenerationParams, logits: &[f32], draws: usize) -> Vec<f64> {
        let mut sampler = Sampler::new(params);
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..draws {
            counts[sampler.sample(&mut logits.to_vec(), &[]) as usize] += 1;
        }
        counts.into_iter().map(|c| c as f64 / draws as f64).collect()
    }

    fn draws(params: &GenerationParams, logits: &[f32], count: usize) -> Vec<u32> {
        let mut sampler = Sampler::new(params);
        (0..count).map(|_| sampler.sample(&mut logits.to_vec(), &[])).collect()
    }

    fn greedy(adjust: impl FnOnce(&mut GenerationParams), logits: &[f32], history: &[u32]) -> u32 {
        let mut sampler = Sampler::new(&params(|p| {
            p.temperature = Some(0.0);
            adjust(p);
        }));
        sampler.sample(&mut logits.to_vec(), history)
    }

    #[test]
    fn unset_params_take_the_defaults() {
        assert_eq!(SamplerSettings::resolve(&GenerationParams::default()), SamplerSettings::DEFAULT);
        let set = SamplerSettings::resolve(&GenerationParams { top_k: Some(5), ..Default::default() });
        assert_eq!(set, SamplerSettings { top_k: 5, ..SamplerSettings::DEFAULT });
    }

    #[test]
    fn temperature_zero_is_argmax() {
        let logits = [0.5, 3.0, -1.0, 2.9, 3.0];
        for seed in 0..20 {
            assert_eq!(greedy(|p| p.seed = Some(seed), &logits, &[]), 1);
        }
    }

    #[test]
    fn same_seed_repeats_and_other_seeds_differ() {
        let logits = vec![0.0; 50];
        let first = draws(&params(|p| p.seed = Some(42)), &logits, 200);
        assert_eq!(first, draws(&params(|p| p.seed = Some(42)), &logits, 200));
        assert_ne!(first, draws(&params(|p| p.seed = Some(43)), &logits, 200));
    }

    #[test]
    fn unfiltered_frequencies_match_the_softmax() {
        let logits = [1.0f32, 0.2, -0.5, 2.0, 0.0, 1.5];
        for temperature in [1.0f32, 0.5, 2.0] {
            let scaled: Vec<f64> = logits.iter().map(|&x| (x as f64 / temperature as f64).exp()).collect();
            let total: f64 = scaled.iter().sum();
            let seen = frequencies(&params(|p| p.temperature = Some(temperature)), &logits, 5000);
            for (token, (seen, weight)) in seen.iter().zip(&scaled).enumerate() {
                let expected = weight / total;
                assert!(
                    (seen - expected).abs() < 0.03,
                    "T={temperature} token {token}: {seen} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn top_k_keeps_only_the_k_largest() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 100) as f32 / 20.0).collect();
        let mut by_logit: Vec<usize> = (0..100).collect();
        by_logit.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let seen = frequencies(&params(|p| p.top_k = Some(3)), &logits, 5000);
        for (token, &frequency) in seen.iter().enumerate() {
            assert_eq!(frequency > 0.0, by_logit[..3].contains(&token), "token {token}");
        }
    }

    #[test]
    fn top_p_keeps_exactly_the_nucleus() {
        // 0.5 + 0.3 = 0.8 < 0.85 ≤ 0.9 = 0.5 + 0.3 + 0.1: the nucleus is tokens 2, 0 and 4.
        let logits = logits_of(&[0.3, 0.05, 0.5, 0.05, 0.1]);
        for top_k in [0, 4] {
            let seen =
                frequencies(&params(|p| (p.top_p, p.top_k) = (Some(0.85), Some(top_k))), &logits, 5000);
            let kept: Vec<bool> = seen.iter().map(|&f| f > 0.0).collect();
            assert_eq!(kept, [true, false, true, false, true], "top_k {top_k}");
            // Renormalised over the nucleus: 0.1 / 0.9.
            assert!((seen[4] - 0.1 / 0.9).abs() < 0.03, "{seen:?}");
        }
    }

    #[test]
    fn min_p_drops_tokens_below_min_p_times_the_max() {
        // With min_p 0.3 the bar is 0.12: tokens 0, 1 and 2 stay.
        let logits = logits_of(&[0.4, 0.3, 0.15, 0.1, 0.05]);
        for top_k in [0, 10] {
            let seen = frequencies(&params(|p| (p.min_p, p.top_k) = (Some(0.3), Some(top_k))), &logits, 5000);
            let kept: Vec<bool> = seen.iter().map(|&f| f > 0.0).collect();
            assert_eq!(kept, [true, true, true, false, false], "top_k {top_k}");
        }
    }

    #[test]
    fn repeat_penalty_divides_positive_and_multiplies_negative_logits() {
        let repeat = |p: &mut GenerationParams| p.repeat_penalty = Some(1.2);
        assert_eq!(greedy(repeat, &[2.0, 1.9, 0.0], &[0]), 1);
        assert_eq!(greedy(repeat, &[-1.0, -1.1, -5.0], &[0]), 1);
        // A token seen only before the last 64 is not penalised.
        let old: Vec<u32> = std::iter::once(0).chain(std::iter::repeat_n(2, PENALTY_WINDOW)).collect();
        assert_eq!(greedy(repeat, &[2.0, 1.9, 0.0], &old), 0);
    }

    #[test]
    fn frequency_penalty_counts_and_presence_penalty_does_not() {
        let logits = [2.0, 1.8, 1.0];
        let history = [0, 0, 0, 1];
        // Token 0: 2.0 − 3 × 0.2 = 1.4; token 1: 1.8 − 0.2 = 1.6.
        assert_eq!(greedy(|p| p.frequency_penalty = Some(0.2), &logits, &history), 1);
        // Token 0: 2.0 − 0.3 = 1.7; token 1: 1.8 − 0.3 = 1.5.
        assert_eq!(greedy(|p| p.presence_penalty = Some(0.3), &logits, &history), 0);
        assert_eq!(greedy(|p| p.presence_penalty = Some(1.5), &logits, &history), 2);
    }

    #[test]
    fn the_caller_s_logits_are_left_as_the_model_gave_them() {
        let logits = [2.0, 1.9, 0.0, -1.0];
        for temperature in [0.0, 1.0] {
            let penalised = params(|p| {
                p.temperature = Some(temperature);
                p.repeat_penalty = Some(1.5);
                p.frequency_penalty = Some(0.5);
            });
            let mut row = logits;
            let token = Sampler::new(&penalised).sample(&mut row, &[0, 0, 3]);
            assert_eq!(row, logits);
            if temperature == 0.0 {
                assert_eq!(token, 1, "the penalty applied to the draw");
            }
        }
    }

    #[test]
    fn finite_means_no_nan_and_no_infinity() {
        let mut values = vec![1e30f32; 100];
        assert!(all_finite(&values));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            values[97] = bad;
            assert!(!all_finite(&values), "{bad}");
        }
        assert!(all_finite(&[]));
    }

    #[test]
    fn fast_exp_matches_the_standard_library() {
        for step in 0..=87_000 {
            let x = -(step as f32) / 1000.0;
            let (fast, exact) = (exp_nonpositive(x), x.exp());
            assert!((fast - exact).abs() <= 3e-7 * exact, "e^{x}: {fast} vs {exact}");
        }
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn odd_logits_and_history_do_not_panic() {
        let mut sampler = Sampler::new(&GenerationParams { repeat_penalty: Some(1.3), ..Default::default() });
        assert_eq!(sampler.sample(&mut [f32::NAN, 1.0, f32::NAN], &[0, 99]), 1);
        assert_eq!(sampler.sample(&mut [f32::NAN, f32::NEG_INFINITY], &[]), 0);
        assert_eq!(sampler.sample(&mut [], &[5]), 0);
        assert_eq!(sampler.sample(&mut [0.0, f32::INFINITY, 1.0], &[]), 1);
    }
}
