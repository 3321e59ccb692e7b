//! How the all-in price of an accepted task is split: creator commission (from a signed,
//! accepted registration for the exact manifest CID), validator fee, and the workers whose
//! claims were accepted. Pure arithmetic on micro-dollars; the payouts always add up to the
//! price exactly.

use d402_protocol::{Amount, ContentId, Payout, PayoutReason};

/// Commission terms taken from a signed registration the gateway accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommissionTerms {
    /// Share of the price in basis points (already checked against the gateway cap).
    pub rate_bps: u32,
    /// The creator's payout account.
    pub wallet: String,
    /// The exact manifest the terms apply to.
    pub manifest_cid: ContentId,
    /// The registration declaring them.
    pub registration_cid: ContentId,
    /// The registration's publisher (base58).
    pub publisher: String,
    /// The registration's namespace.
    pub namespace: String,
}

/// A worker whose claim was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarningWorker {
    /// Payout account (base58).
    pub account: String,
    /// Node id shown in receipts (`node:<account>`).
    pub worker_id: String,
}

/// Who shares an accepted task's price.
#[derive(Debug, Clone)]
pub struct Split<'a> {
    /// The all-in price the buyer paid.
    pub price: Amount,
    /// Workers with accepted claims (at least one).
    pub workers: &'a [EarningWorker],
    /// Creator commission, when a signed accepted registration declares one.
    pub commission: Option<&'a CommissionTerms>,
    /// The validator's account and fee in basis points (0: no fee entry).
    pub validator: Option<(&'a str, u32)>,
    /// The rail the payouts are made on.
    pub rail: &'a str,
}

fn share(price: u64, bps: u32) -> u64 {
    // u128: price * 10_000 cannot overflow; the result is at most `price`.
    (u128::from(price) * u128::from(bps.min(10_000)) / 10_000) as u64
}

/// The payouts of `split`: workers first (net of commission and fee, split evenly, the odd
/// micro-dollars to the first), then the creator commission, then the validator fee.
/// Entries of zero are left out; the amounts always sum to `split.price`.
pub fn payouts(split: &Split<'_>) -> Vec<Payout> {
    assert!(
        !split.workers.is_empty(),
        "an accepted task has at least one worker"
    );
    let price = split.price.micros();
    let commission = split.commission.map_or(0, |c| share(price, c.rate_bps));
    let fee = split
        .validator
        .map_or(0, |(_, bps)| share(price, bps))
        .min(price - commission);
    let net = price - commission - fee;
    let count = split.workers.len() as u64;
    let gross = |i: u64| price / count + u64::from(i == 0) * (price % count);
    let entry = |account: &str, amount: u64, reason: PayoutReason| Payout {
        account: account.to_string(),
        worker_id: None,
        amount: Amount::from_micros(amount),
        gross_amount: None,
        reason,
        rate_bps: None,
        rail: Some(split.rail.to_string()),
        manifest_cid: None,
        registration_cid: None,
        publisher: None,
        namespace: None,
        address: None,
        transaction: None,
    };
    let mut out: Vec<Payout> = split
        .workers
        .iter()
        .zip(0u64..)
        .map(|(worker, i)| {
            let amount = net / count + u64::from(i == 0) * (net % count);
            Payout {
                worker_id: Some(worker.worker_id.clone()),
                gross_amount: Some(Amount::from_micros(gross(i))),
                ..entry(&worker.account, amount, PayoutReason::AcceptedResult)
            }
        })
        .collect();
    if let Some(terms) = split.commission.filter(|_| commission > 0) {
        out.push(Payout {
            gross_amount: Some(split.price),
            rate_bps: Some(terms.rate_bps),
            manifest_cid: Some(terms.manifest_cid),
            registration_cid: Some(terms.registration_cid),
            publisher: Some(terms.publisher.clone()),
            namespace: Some(terms.namespace.clone()),
            ..entry(&terms.wallet, commission, PayoutReason::CreatorCommission)
        });
    }
    if let Some((account, bps)) = split.validator.filter(|_| fee > 0) {
        out.push(Payout {
            gross_amount: Some(split.price),
            rate_bps: Some(bps),
            ..entry(account, fee, PayoutReason::ValidatorFee)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(n: usize) -> Vec<EarningWorker> {
        (0..n)
            .map(|i| EarningWorker {
                account: format!("w{i}"),
                worker_id: format!("node:w{i}"),
            })
            .collect()
    }

    fn terms(rate_bps: u32) -> CommissionTerms {
        let cid = ContentId::of_bytes(b"manifest");
        CommissionTerms {
            rate_bps,
            wallet: "creator".into(),
            manifest_cid: cid,
            registration_cid: ContentId::of_bytes(b"registration"),
            publisher: "publisher".into(),
            namespace: "example".into(),
        }
    }

    fn total(payouts: &[Payout]) -> u64 {
        payouts.iter().map(|p| p.amount.micros()).sum()
    }

    #[test]
    fn the_spec_example_splits_one_cent_into_worker_and_ten_percent_commission() {
        let workers = workers(1);
        let terms = terms(1000);
        let split = Split {
            price: Amount::from_micros(10_000),
            workers: &workers,
            commission: Some(&terms),
            validator: None,
            rail: "simulated",
        };
        let out = payouts(&split);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (
                out[0].amount.micros(),
                out[0].gross_amount.map(|a| a.micros())
            ),
            (9_000, Some(10_000))
        );
        assert_eq!(out[0].reason, PayoutReason::AcceptedResult);
        assert_eq!(
            (out[1].amount.micros(), out[1].rate_bps),
            (1_000, Some(1000))
        );
        assert_eq!(out[1].reason, PayoutReason::CreatorCommission);
        assert_eq!(out[1].manifest_cid, Some(terms.manifest_cid));
    }

    #[test]
    fn payouts_always_add_up_to_the_price() {
        for price in [1u64, 7, 99, 10_000, 12_345, 1_000_003] {
            for n in 1..=5 {
                for (rate, fee) in [(0, 0), (1, 1), (1000, 500), (2000, 10_000), (3333, 3333)] {
                    let workers = workers(n);
                    let terms = terms(rate);
                    let split = Split {
                        price: Amount::from_micros(price),
                        workers: &workers,
                        commission: (rate > 0).then_some(&terms),
                        validator: Some(("validator", fee)),
                        rail: "simulated",
                    };
                    let out = payouts(&split);
                    assert_eq!(
                        total(&out),
                        price,
                        "price {price}, {n} workers, rate {rate}, fee {fee}"
                    );
                    assert_eq!(
                        out.iter()
                            .filter(|p| p.reason == PayoutReason::AcceptedResult)
                            .count(),
                        n
                    );
                }
            }
        }
    }

    #[test]
    fn a_validator_fee_is_its_own_entry_and_zero_entries_are_left_out() {
        let workers = workers(2);
        let split = Split {
            price: Amount::from_micros(10_000),
            workers: &workers,
            commission: None,
            validator: Some(("v", 500)),
            rail: "simulated",
        };
        let out = payouts(&split);
        let reasons: Vec<_> = out.iter().map(|p| (p.reason, p.amount.micros())).collect();
        assert_eq!(
            reasons,
            [
                (PayoutReason::AcceptedResult, 4_750),
                (PayoutReason::AcceptedResult, 4_750),
                (PayoutReason::ValidatorFee, 500)
            ]
        );
        let none = Split {
            validator: Some(("v", 0)),
            ..split
        };
        assert!(
            payouts(&none)
                .iter()
                .all(|p| p.reason == PayoutReason::AcceptedResult)
        );
    }
}
