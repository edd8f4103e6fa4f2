//! Simulated merchants: a weighted MCC distribution (DE18), typical amounts per category, and
//! pre-formatted DE41/DE42/DE43 values so that building a request copies nothing.

use rand::Rng;

/// One merchant category: how often it appears in traffic and what it typically charges.
#[derive(Clone, Copy, Debug)]
pub struct Category {
    pub mcc: u16,
    /// Relative share of transactions.
    pub weight: u32,
    /// Merchant name stem, at most 18 characters (a 6-character suffix is added).
    pub name: &'static str,
    pub amount_min_minor: i64,
    pub amount_max_minor: i64,
}

/// Card-present traffic of a US issuer, roughly: groceries, fuel and eating out dominate.
pub const CATEGORIES: &[Category] = &[
    cat(5411, 22, "FRESH MARKET", 500, 15_000),
    cat(5541, 7, "CORNER FUEL", 2_000, 9_000),
    cat(5542, 7, "FUEL PUMP", 2_000, 9_000),
    cat(5812, 11, "BISTRO", 1_500, 12_000),
    cat(5814, 13, "QUICK BITE", 300, 2_500),
    cat(5999, 7, "GENERAL STORE", 500, 20_000),
    cat(5311, 5, "DEPT STORE", 1_000, 30_000),
    cat(5912, 5, "PHARMACY", 300, 8_000),
    cat(4121, 5, "RIDESHARE", 800, 6_000),
    cat(5815, 4, "DIGITAL MEDIA", 99, 2_999),
    cat(5732, 2, "ELECTRONICS", 2_000, 150_000),
    cat(4814, 2, "TELECOM", 2_000, 12_000),
    cat(7011, 3, "GRAND HOTEL", 8_000, 60_000),
    cat(4511, 2, "AIRLINE", 10_000, 150_000),
    cat(3000, 1, "UNITED AIRLINES", 10_000, 150_000),
    cat(3058, 1, "DELTA AIR LINES", 10_000, 150_000),
    cat(7523, 2, "PARKING", 200, 4_000),
    cat(5200, 1, "HOME IMPROVEMENT", 1_000, 50_000),
];

const fn cat(mcc: u16, weight: u32, name: &'static str, min: i64, max: i64) -> Category {
    Category {
        mcc,
        weight,
        name,
        amount_min_minor: min,
        amount_max_minor: max,
    }
}

/// City (at most 13 characters) and ISO 3166 alpha-2 country, weighted toward the US.
const LOCATIONS: &[(&str, &str, u32)] = &[
    ("NEW YORK", "US", 14),
    ("SAN FRANCISCO", "US", 8),
    ("CHICAGO", "US", 8),
    ("AUSTIN", "US", 6),
    ("SEATTLE", "US", 6),
    ("MIAMI", "US", 6),
    ("DENVER", "US", 4),
    ("TORONTO", "CA", 3),
    ("LONDON", "GB", 3),
    ("PARIS", "FR", 2),
    ("BERLIN", "DE", 1),
    ("MEXICO CITY", "MX", 1),
];

/// Merchants generated per category.
pub const MERCHANTS_PER_CATEGORY: usize = 16;

/// A merchant with its wire values ready.
#[derive(Clone, Debug)]
pub struct Merchant {
    pub mcc: u16,
    pub amount_min_minor: i64,
    pub amount_max_minor: i64,
    /// DE41, terminal id.
    pub terminal_id: [u8; 8],
    /// DE42, card acceptor id.
    pub acceptor_id: [u8; 15],
    /// DE43: name (25) city (13) country (2), space padded.
    pub name_location: [u8; 40],
}

/// The merchant population and its cumulative category weights.
pub struct Merchants {
    merchants: Vec<Merchant>,
    /// Cumulative category weights, same order as `CATEGORIES`.
    cumulative: Vec<u32>,
}

fn pad<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
    let mut out = [b' '; N];
    let mut at = 0;
    for part in parts {
        let take = part.len().min(N - at);
        out[at..at + take].copy_from_slice(&part[..take]);
        at += take;
    }
    out
}

fn pick_location(rng: &mut impl Rng) -> (&'static str, &'static str) {
    let total: u32 = LOCATIONS.iter().map(|l| l.2).sum();
    let mut roll = rng.random_range(0..total);
    for &(city, country, weight) in LOCATIONS {
        if roll < weight {
            return (city, country);
        }
        roll -= weight;
    }
    unreachable!("location weights sum to total")
}

impl Merchants {
    /// Builds `MERCHANTS_PER_CATEGORY` merchants per category from `rng`.
    pub fn generate(rng: &mut impl Rng) -> Merchants {
        let mut merchants = Vec::with_capacity(CATEGORIES.len() * MERCHANTS_PER_CATEGORY);
        let mut cumulative = Vec::with_capacity(CATEGORIES.len());
        let mut sum = 0;
        for (c, category) in CATEGORIES.iter().enumerate() {
            sum += category.weight;
            cumulative.push(sum);
            for m in 0..MERCHANTS_PER_CATEGORY {
                let (city, country) = pick_location(rng);
                let suffix = format!(" {:02}{:03}", c, m * 7 + 100);
                let terminal = format!("T{:04}{:03}", c * 100 + m, rng.random_range(0..1000));
                let acceptor =
                    format!("{:04}{:011}", category.mcc, rng.random_range(0..1u64 << 36));
                merchants.push(Merchant {
                    mcc: category.mcc,
                    amount_min_minor: category.amount_min_minor,
                    amount_max_minor: category.amount_max_minor,
                    terminal_id: pad(&[terminal.as_bytes()]),
                    acceptor_id: pad(&[&acceptor.as_bytes()[..15]]),
                    name_location: pad(&[
                        &pad::<25>(&[category.name.as_bytes(), suffix.as_bytes()]),
                        &pad::<13>(&[city.as_bytes()]),
                        country.as_bytes(),
                    ]),
                });
            }
        }
        Merchants {
            merchants,
            cumulative,
        }
    }

    /// A merchant: category by weight, then one of its merchants uniformly.
    /// Index into `all()` of a merchant: category by weight, then one of its merchants
    /// uniformly.
    pub fn pick_index(&self, rng: &mut impl Rng) -> usize {
        let total = *self.cumulative.last().expect("categories are not empty");
        let roll = rng.random_range(0..total);
        let category = self.cumulative.partition_point(|&c| c <= roll);
        category * MERCHANTS_PER_CATEGORY + rng.random_range(0..MERCHANTS_PER_CATEGORY)
    }

    pub fn all(&self) -> &[Merchant] {
        &self.merchants
    }
}

impl Merchant {
    /// A purchase amount typical of the category, in minor units.
    pub fn amount_minor(&self, rng: &mut impl Rng) -> i64 {
        rng.random_range(self.amount_min_minor..=self.amount_max_minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashMap;

    #[test]
    fn mcc_frequencies_follow_the_weights() {
        let mut rng = StdRng::seed_from_u64(7);
        let merchants = Merchants::generate(&mut rng);
        let draws = 200_000;
        let mut counts: HashMap<u16, u32> = HashMap::new();
        for _ in 0..draws {
            let m = merchants.pick_index(&mut rng);
            *counts.entry(merchants.all()[m].mcc).or_default() += 1;
        }
        let total: u32 = CATEGORIES.iter().map(|c| c.weight).sum();
        assert_eq!(total, 100);
        assert_eq!(counts.len(), CATEGORIES.len(), "every category is drawn");
        for category in CATEGORIES {
            let expected = draws as f64 * category.weight as f64 / total as f64;
            let seen = counts[&category.mcc] as f64;
            // Binomial standard deviation is under 190 here; 5 sigma never trips by chance.
            assert!(
                (seen - expected).abs() < 950.0,
                "MCC {}: {seen} drawn, {expected} expected",
                category.mcc
            );
        }
    }

    #[test]
    fn wire_values_are_padded_and_laid_out() {
        let mut rng = StdRng::seed_from_u64(1);
        let merchants = Merchants::generate(&mut rng);
        assert_eq!(
            merchants.all().len(),
            CATEGORIES.len() * MERCHANTS_PER_CATEGORY
        );
        let first = &merchants.all()[0];
        assert_eq!(first.mcc, 5411);
        assert_eq!(&first.name_location[..18], b"FRESH MARKET 00100");
        assert!(first.name_location[18..25].iter().all(|&c| c == b' '));
        let country = &first.name_location[38..40];
        assert!(LOCATIONS.iter().any(|l| l.1.as_bytes() == country));
        assert_eq!(&first.acceptor_id[..4], b"5411");
        assert_eq!(first.terminal_id[0], b'T');
        for m in merchants.all() {
            assert!(m
                .name_location
                .iter()
                .all(|c| c.is_ascii_graphic() || *c == b' '));
            let amount = m.amount_minor(&mut rng);
            assert!((m.amount_min_minor..=m.amount_max_minor).contains(&amount));
        }
    }
}
