use super::*;

fn sample() -> Vec<u8> {
    GgufWriter::new()
        .meta("general.architecture", MetaValue::String("llama".into()))
        .meta("llama.block_count", MetaValue::U32(2))
        .meta("llama.rope.freq_base", MetaValue::F32(10000.0))
        .meta(
            "tokenizer.ggml.tokens",
            MetaValue::Array(vec![MetaValue::String("a".into()), MetaValue::String("b".into())]),
        )
        .meta("flag", MetaValue::Bool(true))
        .tensor_f32("w", &[4, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
        .tensor_f32("v", &[3], &[0.5, -0.5, 1.5])
        .to_bytes()
}

#[test]
fn round_trips_metadata_and_tensors() {
    let g = Gguf::from_bytes(sample()).unwrap();
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(g.get_u64("llama.block_count").unwrap(), 2);
    assert_eq!(g.get_f64("llama.rope.freq_base").unwrap(), 10000.0);
    assert!(g.get_bool("flag").unwrap());
    assert_eq!(g.get_array("tokenizer.ggml.tokens").unwrap().len(), 2);
    let v = g.tensor("v").unwrap();
    assert_eq!(v.dims, vec![3]);
    let data: Vec<f32> =
        g.tensor_data(v).chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(data, vec![0.5, -0.5, 1.5]);
}

#[test]
fn missing_and_mistyped_keys_are_named() {
    let g = Gguf::from_bytes(sample()).unwrap();
    assert_eq!(g.get_u64("nope").unwrap_err().to_string(), "metadata key `nope` is missing");
    let err = g.get_u64("general.architecture").unwrap_err().to_string();
    assert!(err.contains("general.architecture") && err.contains("a string"), "{err}");
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample();
    // Everything up to the last tensor's end is needed; trailing alignment padding is not.
    let needed = bytes.len() - 20;
    for len in 0..needed {
        assert!(Gguf::from_bytes(bytes[..len].to_vec()).is_err(), "a file cut to {len} bytes was accepted");
    }
    let err = Gguf::from_bytes(bytes[..needed - 1].to_vec()).unwrap_err().to_string();
    assert!(err.contains("truncated") && err.contains("tensor `v`"), "{err}");
}

#[test]
fn bad_magic_version_and_type_are_explained() {
    let mut bytes = sample();
    bytes[0] = b'X';
    assert!(Gguf::from_bytes(bytes).unwrap_err().to_string().contains("not a GGUF file"));

    let mut bytes = sample();
    bytes[4] = 9;
    assert!(Gguf::from_bytes(bytes).unwrap_err().to_string().contains("version 9"));

    let bytes = GgufWriter::new().tensor("q", &[32], GgmlType::Q4_0, vec![0; 18]).to_bytes();
    let mut patched = bytes.clone();
    // The tensor type id follows the name and the dims; replace it with an unknown type (16).
    let type_pos = 24 + 8 + 1 + 4 + 8;
    patched[type_pos..type_pos + 4].copy_from_slice(&16u32.to_le_bytes());
    let err = Gguf::from_bytes(patched).unwrap_err().to_string();
    assert_eq!(err, "tensor `q` has ggml type 16, which Temper does not support");
    assert!(Gguf::from_bytes(bytes).is_ok());
}

#[test]
fn random_corruption_never_panics() {
    // A deterministic stand-in for the cargo-fuzz target: flip bytes all over a valid file.
    let bytes = sample();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        let mut corrupt = bytes.clone();
        for _ in 0..1 + (state % 4) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let pos = (state % corrupt.len() as u64) as usize;
            corrupt[pos] = (state >> 32) as u8;
        }
        let _ = Gguf::from_bytes(corrupt);
    }
}

#[test]
fn a_type_that_does_not_match_the_data_is_refused_by_name() {
    let file = |ty: GgmlType, len: usize| {
        GgufWriter::new().tensor("a", &[64], ty, vec![0; len]).tensor_f32("b", &[8], &[1.0; 8]).to_bytes()
    };
    // The type id of `a` follows its name and its one dimension.
    let retyped = |mut bytes: Vec<u8>, ty: GgmlType| {
        let type_pos = 24 + 8 + 1 + 4 + 8;
        bytes[type_pos..type_pos + 4].copy_from_slice(&ty.id().to_le_bytes());
        Gguf::from_bytes(bytes).map(|_| ()).unwrap_err().to_string()
    };
    assert!(Gguf::from_bytes(file(GgmlType::F16, 128)).is_ok());
    // F16 data read as F32 is twice as long: it would read `b` as part of `a`.
    let err = retyped(file(GgmlType::F16, 128), GgmlType::F32);
    assert!(err.contains("tensor `a`") && err.contains("runs into tensor `b`"), "{err}");
    // F32 data read as Q8_0 is shorter: `a` would be read from part of its data.
    let err = retyped(file(GgmlType::F32, 256), GgmlType::Q8_0);
    assert!(err.contains("tensor `a`") && err.contains("unused bytes before tensor `b`"), "{err}");
}

#[test]
fn a_key_or_a_tensor_given_twice_is_refused() {
    // The writer keeps names unique, so the second name is overwritten with the first.
    let twice = |bytes: Vec<u8>, first: &[u8], second: &[u8]| {
        let mut bytes = bytes;
        let at = bytes.windows(second.len()).position(|w| w == second).unwrap();
        bytes[at..at + second.len()].copy_from_slice(first);
        Gguf::from_bytes(bytes).map(|_| ()).unwrap_err().to_string()
    };
    let keys = GgufWriter::new().meta("key.a", MetaValue::U8(1)).meta("key.b", MetaValue::U8(2));
    let err = twice(keys.to_bytes(), b"key.a", b"key.b");
    assert!(err.contains("metadata key `key.a`") && err.contains("appears twice"), "{err}");
    let tensors = GgufWriter::new().tensor_f32("ta", &[8], &[0.0; 8]).tensor_f32("tb", &[8], &[0.0; 8]);
    assert!(twice(tensors.to_bytes(), b"ta", b"tb").contains("tensor `ta`"));
}

#[test]
fn the_writer_replaces_what_is_set_again() {
    let g = Gguf::from_bytes(
        GgufWriter::new()
            .meta("k", MetaValue::U8(1))
            .tensor_f32("t", &[2], &[1.0, 2.0])
            .meta("k", MetaValue::U8(2))
            .tensor_f32("t", &[3], &[3.0, 4.0, 5.0])
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(
        (g.get_u64("k").unwrap(), g.tensors.len(), g.tensor("t").unwrap().dims.clone()),
        (2, 1, vec![3])
    );
}
