//! The cards the simulated network sends traffic for: synthesized locally, loaded from a
//! portfolio file, or provisioned through the admin API (see `admin`).
//!
//! File format, one card per line: `PAN[,YYMM[,account id]]`. Blank lines and lines starting
//! with `#` are skipped. The PANs are test cards of a test switch; the file exists so a later
//! run can reuse a portfolio without provisioning it again.

use std::fmt;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use authswitch::iso8583::{Pan, PAN_LEN_MAX};
use rand::Rng;

/// Longest line accepted in a portfolio file.
pub const LINE_LEN_MAX: usize = 256;
/// Expiry given to cards that do not say otherwise: December 2030.
pub const EXPIRY_YYMM_DEFAULT: u16 = 3012;
/// BIN of synthesized cards (a well-known test range).
const SYNTHETIC_BIN: &[u8] = b"424242";
const SYNTHETIC_PAN_LEN: usize = 16;

/// One card. `Debug` masks the PAN.
#[derive(Clone, Copy)]
pub struct Card {
    pan: Pan,
    /// DE14, `YYMM`.
    pub expiry_yymm: u16,
    /// Index into `Portfolio::accounts` (or a synthetic account number).
    pub account: u32,
}

impl Card {
    pub fn new(pan: Pan, expiry_yymm: u16, account: u32) -> Card {
        Card {
            pan,
            expiry_yymm,
            account,
        }
    }

    pub fn pan_digits(&self) -> &[u8] {
        self.pan.as_digits()
    }
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Card({}, exp {:04}, account #{})",
            self.pan.masked(),
            self.expiry_yymm,
            self.account
        )
    }
}

/// Cards plus the admin ids of the accounts they draw on (empty when unknown).
#[derive(Debug, Default)]
pub struct Portfolio {
    pub cards: Vec<Card>,
    pub account_ids: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PortfolioError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path} line {line}: {what}")]
    BadLine {
        path: String,
        line: usize,
        what: &'static str,
    },
    #[error("{path}: more than {max} cards")]
    TooManyCards { path: String, max: usize },
    #[error("{path}: no cards")]
    Empty { path: String },
}

/// Appends the Luhn check digit to `body` (all digits).
pub fn luhn_complete(body: &mut Vec<u8>) {
    body.push(authswitch::iso8583::luhn_check_digit(body));
}

/// `count` Luhn-valid test cards spread round robin over `accounts` synthetic accounts.
pub fn synthesize(count: u32, accounts: u32, rng: &mut impl Rng) -> Portfolio {
    assert!(accounts > 0);
    let mut cards = Vec::with_capacity(count as usize);
    let mut digits = Vec::with_capacity(SYNTHETIC_PAN_LEN);
    for i in 0..count {
        digits.clear();
        digits.extend_from_slice(SYNTHETIC_BIN);
        while digits.len() < SYNTHETIC_PAN_LEN - 1 {
            digits.push(b'0' + rng.random_range(0..10u8));
        }
        luhn_complete(&mut digits);
        let pan = Pan::from_digits(&digits).expect("16 digits form a PAN");
        cards.push(Card::new(pan, EXPIRY_YYMM_DEFAULT, i % accounts));
    }
    Portfolio {
        cards,
        account_ids: Vec::new(),
    }
}

fn parse_line(line: &str, accounts: &mut Vec<String>) -> Result<Card, &'static str> {
    let mut parts = line.split(',').map(str::trim);
    let pan = parts.next().unwrap_or("");
    if pan.len() > PAN_LEN_MAX {
        return Err("PAN too long");
    }
    let pan = Pan::from_digits(pan.as_bytes()).ok_or("not a PAN")?;
    let expiry = match parts.next() {
        None | Some("") => EXPIRY_YYMM_DEFAULT,
        Some(e) if e.len() == 4 => e.parse().map_err(|_| "expiry is not YYMM")?,
        Some(_) => return Err("expiry is not YYMM"),
    };
    let account = match parts.next() {
        None | Some("") => 0,
        Some(id) => {
            if id.len() > 64 || !id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err("bad account id");
            }
            match accounts.iter().position(|a| a == id) {
                Some(i) => i as u32,
                None => {
                    accounts.push(id.to_string());
                    (accounts.len() - 1) as u32
                }
            }
        }
    };
    Ok(Card::new(pan, expiry, account))
}

/// Reads a portfolio file; at most `cards_max` cards.
pub fn read(path: &Path, cards_max: usize) -> Result<Portfolio, PortfolioError> {
    let name = path.display().to_string();
    let io = |e: std::io::Error| PortfolioError::Io {
        path: name.clone(),
        reason: e.to_string(),
    };
    let file = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut portfolio = Portfolio::default();
    // Account lookup is linear; a map would be faster but files name few accounts.
    for (n, line) in file.lines().enumerate() {
        let line = line.map_err(io)?;
        let bad = |what| PortfolioError::BadLine {
            path: name.clone(),
            line: n + 1,
            what,
        };
        if line.len() > LINE_LEN_MAX {
            return Err(bad("line too long"));
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if portfolio.cards.len() == cards_max {
            return Err(PortfolioError::TooManyCards {
                path: name,
                max: cards_max,
            });
        }
        let card = parse_line(line, &mut portfolio.account_ids).map_err(bad)?;
        portfolio.cards.push(card);
    }
    if portfolio.cards.is_empty() {
        return Err(PortfolioError::Empty { path: name });
    }
    Ok(portfolio)
}

/// Writes `portfolio` in the format `read` takes.
pub fn write(path: &Path, portfolio: &Portfolio) -> Result<(), PortfolioError> {
    let io = |e: std::io::Error| PortfolioError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        // Test PANs still are card numbers: readable by the owner only.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = BufWriter::new(options.open(path).map_err(io)?);
    writeln!(out, "# loadtest portfolio: PAN,YYMM,account").map_err(io)?;
    for card in &portfolio.cards {
        out.write_all(card.pan_digits()).map_err(io)?;
        write!(out, ",{:04}", card.expiry_yymm).map_err(io)?;
        if let Some(id) = portfolio.account_ids.get(card.account as usize) {
            write!(out, ",{id}").map_err(io)?;
        }
        writeln!(out).map_err(io)?;
    }
    out.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn synthesized_cards_are_luhn_valid_and_round_robin() {
        let mut rng = StdRng::seed_from_u64(3);
        let portfolio = synthesize(10, 3, &mut rng);
        assert_eq!(portfolio.cards.len(), 10);
        for (i, card) in portfolio.cards.iter().enumerate() {
            let pan = Pan::from_digits(card.pan_digits()).unwrap();
            assert!(pan.luhn_valid());
            assert_eq!(&card.pan_digits()[..6], b"424242");
            assert_eq!(card.account, i as u32 % 3);
            assert_eq!(card.expiry_yymm, 3012);
        }
        let mut body = b"411111111111111".to_vec();
        luhn_complete(&mut body);
        assert_eq!(body, b"4111111111111111");
    }

    #[test]
    fn debug_masks_the_pan() {
        let pan = Pan::from_digits(b"4111111111111111").unwrap();
        let shown = format!("{:?}", Card::new(pan, 2612, 4));
        assert_eq!(shown, "Card(411111******1111, exp 2612, account #4)");
    }

    #[test]
    fn file_round_trips_and_rejects_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cards.txt");
        std::fs::write(
            &path,
            "# comment\n4111111111111111,2612,acct_a\n\n4242424242424242\n5555555555554444,,acct_b\n4000056655665556,2701,acct_a\n",
        )
        .unwrap();
        let portfolio = read(&path, 10).unwrap();
        assert_eq!(portfolio.account_ids, ["acct_a", "acct_b"]);
        let summary: Vec<(u16, u32)> = portfolio
            .cards
            .iter()
            .map(|c| (c.expiry_yymm, c.account))
            .collect();
        assert_eq!(summary, [(2612, 0), (3012, 0), (3012, 1), (2701, 0)]);
        let copy = dir.path().join("copy.txt");
        write(&copy, &portfolio).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = read(&copy, 10).unwrap();
        assert_eq!(again.cards.len(), 4);
        assert_eq!(again.cards[3].pan_digits(), b"4000056655665556");
        assert!(matches!(
            read(&path, 3),
            Err(PortfolioError::TooManyCards { max: 3, .. })
        ));
        std::fs::write(&path, "4111111111111111,26\n").unwrap();
        assert!(matches!(
            read(&path, 10),
            Err(PortfolioError::BadLine {
                line: 1,
                what: "expiry is not YYMM",
                ..
            })
        ));
        std::fs::write(&path, "41111x\n").unwrap();
        let err = read(&path, 10).unwrap_err();
        assert!(!err.to_string().contains("41111x"), "{err}");
    }
}
