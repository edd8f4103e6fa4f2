//! DE11 system trace audit numbers: unique per connection among requests in flight,
//! 1..=999999, wrapping to 1.

/// Largest STAN (six digits).
pub const STAN_MAX: u32 = 999_999;

/// Hands out STANs in sequence.
#[derive(Clone, Debug)]
pub struct StanCounter {
    next: u32,
}

impl StanCounter {
    /// Starts at `first`, folded into 1..=STAN_MAX.
    pub fn starting_at(first: u32) -> StanCounter {
        StanCounter {
            next: (first.saturating_sub(1)) % STAN_MAX + 1,
        }
    }

    /// Spreads `count` connections' starting points over the STAN space, so that two
    /// connections never use the same STAN in the same second at realistic rates (the switch
    /// keys duplicates on DE32, DE11 and DE7).
    pub fn for_connection(index: u32, count: u32) -> StanCounter {
        assert!(count > 0 && index < count);
        StanCounter::starting_at(1 + index * (STAN_MAX / count))
    }

    pub fn next_stan(&mut self) -> u32 {
        let stan = self.next;
        assert!((1..=STAN_MAX).contains(&stan));
        self.next = if stan == STAN_MAX { 1 } else { stan + 1 };
        stan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_from_999999_to_1() {
        let mut stan = StanCounter::starting_at(999_998);
        let seen: Vec<u32> = (0..4).map(|_| stan.next_stan()).collect();
        assert_eq!(seen, [999_998, 999_999, 1, 2]);
        assert_eq!(StanCounter::starting_at(0).next_stan(), 1);
        assert_eq!(StanCounter::starting_at(1_000_000).next_stan(), 1);
    }

    #[test]
    fn connections_start_apart() {
        let starts: Vec<u32> = (0..4)
            .map(|i| StanCounter::for_connection(i, 4).next_stan())
            .collect();
        assert_eq!(starts, [1, 249_999 + 1, 2 * 249_999 + 1, 3 * 249_999 + 1]);
        assert_eq!(StanCounter::for_connection(0, 1).next_stan(), 1);
    }
}
