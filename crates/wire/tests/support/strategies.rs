//! proptest strategies shared by the wire crate's property tests.

#![allow(dead_code)]

use proptest::collection::SizeRange;
use proptest::prelude::*;
use sparsemap_wire::{heapless, FaultKind, Samples};

/// `I16` or `F32` samples, `len` of them, with `value` for the scale and the `f32` pairs.
pub fn samples<const N: usize>(
    value: impl Strategy<Value = f32> + Clone + 'static,
    len: impl Into<SizeRange>,
) -> impl Strategy<Value = Samples<N>> {
    let len = len.into();
    prop_oneof![
        (
            value.clone(),
            prop::collection::vec(any::<[i16; 2]>(), len.clone())
        )
            .prop_map(|(scale, v)| Samples::I16 {
                scale,
                iq: heapless::Vec::from_slice(&v).unwrap(),
            }),
        prop::collection::vec([value.clone(), value], len).prop_map(|v| Samples::F32 {
            iq: heapless::Vec::from_slice(&v).unwrap()
        }),
    ]
}

/// Every `FaultKind`.
pub fn fault_kind() -> impl Strategy<Value = FaultKind> {
    prop_oneof![
        Just(FaultKind::AdcBus),
        Just(FaultKind::AdcProtocol),
        Just(FaultKind::AdcStatus),
        Just(FaultKind::AdcTimeout),
        Just(FaultKind::TriggerTimeout),
        Just(FaultKind::AdcConfig),
        Just(FaultKind::LinkOverrun),
        Just(FaultKind::InvalidPlan),
    ]
}
