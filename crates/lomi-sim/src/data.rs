//! Realistic random values: West African names (with their accents and apostrophes),
//! ASCII emails derived from them, local phone numbers, optional fields that are sometimes
//! null, metadata objects, and transactions with exact amounts.
//!
//! Every function draws from the caller's [`Rng`], in a fixed order, so a seed always
//! yields the same values.

use serde_json::{Map, Value, json};

use super::model::{Channel, Currency, Payer, Profile, Tx, TxStatus};
use super::rng::{Rng, mix64};

/// The window the initial data lies in: 2023-01-01T00:00:00Z ..= 2026-06-30T23:59:59.999Z.
pub(super) const DATA_START_MS: i64 = 1_672_531_200_000;
pub(super) const DATA_END_MS: i64 = 1_782_863_999_999;

/// Before this date, Ghanaian, Nigerian and Kenyan customers paid in their local currency
/// ("older data also GHS, NGN, KES"); afterwards in USD.
const LOCAL_CURRENCY_UNTIL_MS: i64 = 1_719_792_000_000; // 2024-07-01

const DAY_MS: i64 = 86_400_000;

enum Postal {
    /// A numeric code of this many digits (Senegal, Nigeria, Kenya).
    Digits(u32),
    /// A "boîte postale" as used in Côte d'Ivoire, Mali, Burkina Faso, Bénin and Togo.
    PostBox,
    /// A Ghana Post GPS digital address.
    GhanaGps,
}

pub(super) struct Region {
    country: &'static str,
    weight: u32,
    dial: &'static str,
    mobile_prefixes: &'static [&'static str],
    subscriber_digits: u32,
    first_names: &'static [&'static str],
    last_names: &'static [&'static str],
    cities: &'static [&'static str],
    streets: &'static [&'static str],
    postal: Postal,
    currency: Currency,
}

const REGIONS: &[Region] = &[
    Region {
        country: "Senegal",
        weight: 40,
        dial: "+221",
        mobile_prefixes: &["77", "78", "76", "70", "75"],
        subscriber_digits: 7,
        first_names: &[
            "Aïssatou",
            "Ndèye",
            "Fatou",
            "Mamadou",
            "Amadou",
            "Ousmane",
            "Moussa",
            "Awa",
            "Mariama",
            "Khady",
            "Cheikh",
            "Ibrahima",
            "Modou",
            "Aminata",
            "Coumba",
            "Seynabou",
            "Abdoulaye",
            "Babacar",
            "Sokhna",
            "Rokhaya",
            "Maïmouna",
            "Penda",
            "Djibril",
            "Souleymane",
            "Assane",
            "Adama",
            "Mame Diarra",
            "Ndèye Fatou",
            "Serigne",
            "Astou",
        ],
        last_names: &[
            "Diop", "Ndiaye", "N'Diaye", "Fall", "Sène", "Sow", "Ba", "Diallo", "Faye", "Gueye",
            "Mbaye", "Cissé", "Thiam", "Niang", "Kane", "Seck", "Dieng", "Touré", "Camara",
            "Diagne", "Mbodj", "Ndour", "Sarr", "Wade", "Lô", "Ndao",
        ],
        cities: &[
            "Dakar",
            "Thiès",
            "Saint-Louis",
            "Touba",
            "Ziguinchor",
            "Kaolack",
            "Mbour",
            "Rufisque",
            "Pikine",
            "Guédiawaye",
        ],
        streets: &[
            "Rue 10 x 15, Médina",
            "Cité Keur Gorgui, Villa {n}",
            "Avenue Cheikh Anta Diop",
            "Sacré-Cœur 3, Villa {n}",
            "Rue Carnot, Plateau",
            "HLM Grand Yoff, Lot {n}",
            "Almadies, Route de Ngor",
        ],
        postal: Postal::Digits(5),
        currency: Currency::Xof,
    },
    Region {
        country: "Côte d'Ivoire",
        weight: 25,
        dial: "+225",
        mobile_prefixes: &["07", "05", "01"],
        subscriber_digits: 8,
        first_names: &[
            "Kouamé",
            "Koffi",
            "Adjoua",
            "Yao",
            "Akissi",
            "Konan",
            "Aya",
            "Kouassi",
            "Affoué",
            "N'Guessan",
            "Ahou",
            "Aminata",
            "Mariam",
            "Sékou",
            "Bakary",
            "Adama",
            "Emmanuel",
            "Christelle",
            "Marie-Noëlle",
            "Évelyne",
        ],
        last_names: &[
            "Kouassi",
            "Koné",
            "Ouattara",
            "Bamba",
            "Coulibaly",
            "Traoré",
            "Yao",
            "Kouadio",
            "N'Guessan",
            "Konaté",
            "Diabaté",
            "Brou",
            "Gnagne",
            "Aké",
            "Kouamé",
            "Dosso",
            "Gbagbo",
            "Tanoh",
        ],
        cities: &[
            "Abidjan",
            "Bouaké",
            "Yamoussoukro",
            "San-Pédro",
            "Daloa",
            "Korhogo",
            "Grand-Bassam",
        ],
        streets: &[
            "Boulevard Latrille, Cocody",
            "Rue du Commerce, Plateau",
            "Cité des Arts, Ilot {n}",
            "Riviera Palmeraie, Villa {n}",
            "Marcory Zone 4, Rue {n}",
            "Yopougon Selmer, Lot {n}",
        ],
        postal: Postal::PostBox,
        currency: Currency::Xof,
    },
    Region {
        country: "Mali",
        weight: 6,
        dial: "+223",
        mobile_prefixes: &["76", "66", "70", "79"],
        subscriber_digits: 6,
        first_names: &[
            "Boubacar",
            "Oumou",
            "Salif",
            "Fatoumata",
            "Bakary",
            "Kadiatou",
            "Seydou",
            "Hawa",
            "Modibo",
            "Assétou",
            "Djénéba",
            "Mahamadou",
        ],
        last_names: &[
            "Keïta",
            "Traoré",
            "Coulibaly",
            "Diarra",
            "Sidibé",
            "Sangaré",
            "Maïga",
            "Touré",
            "Doumbia",
            "Konaté",
        ],
        cities: &["Bamako", "Sikasso", "Ségou", "Mopti", "Kayes"],
        streets: &[
            "ACI 2000, Rue {n}",
            "Hamdallaye, Porte {n}",
            "Badalabougou Est",
        ],
        postal: Postal::PostBox,
        currency: Currency::Xof,
    },
    Region {
        country: "Burkina Faso",
        weight: 5,
        dial: "+226",
        mobile_prefixes: &["70", "76", "78", "65"],
        subscriber_digits: 6,
        first_names: &[
            "Wendkouni",
            "Rasmané",
            "Salamata",
            "Issouf",
            "Aïcha",
            "Boukary",
            "Pélagie",
            "Noélie",
        ],
        last_names: &[
            "Ouédraogo",
            "Sawadogo",
            "Zongo",
            "Kaboré",
            "Compaoré",
            "Ilboudo",
            "Traoré",
            "Zoungrana",
        ],
        cities: &["Ouagadougou", "Bobo-Dioulasso", "Koudougou", "Banfora"],
        streets: &[
            "Ouaga 2000, Secteur {n}",
            "Avenue Kwame Nkrumah",
            "Gounghin, Rue {n}",
        ],
        postal: Postal::PostBox,
        currency: Currency::Xof,
    },
    Region {
        country: "Bénin",
        weight: 5,
        dial: "+229",
        mobile_prefixes: &["0196", "0197", "0161", "0166"],
        subscriber_digits: 6,
        first_names: &[
            "Sènami", "Koffi", "Afi", "Ayélé", "Comlan", "Édem", "Mawuli", "Sika", "Rodrigue",
            "Gisèle",
        ],
        last_names: &[
            "Agbodjan",
            "Houngbédji",
            "Adjovi",
            "Akakpo",
            "Dossou",
            "Hounkpatin",
            "Gbèto",
            "Zinsou",
            "Ahouandjinou",
        ],
        cities: &[
            "Cotonou",
            "Porto-Novo",
            "Parakou",
            "Abomey-Calavi",
            "Ouidah",
        ],
        streets: &[
            "Haie Vive, Carré {n}",
            "Akpakpa, Rue {n}",
            "Fidjrossè Plage",
        ],
        postal: Postal::PostBox,
        currency: Currency::Xof,
    },
    Region {
        country: "Togo",
        weight: 4,
        dial: "+228",
        mobile_prefixes: &["90", "91", "92", "99", "70"],
        subscriber_digits: 6,
        first_names: &[
            "Kossi", "Ablavi", "Yawo", "Akossiwa", "Kodjo", "Dédé", "Mawuéna",
        ],
        last_names: &["Agbéko", "Amegee", "Kpodar", "Lawson", "Adjaho", "Tchalla"],
        cities: &["Lomé", "Sokodé", "Kara", "Kpalimé"],
        streets: &["Bè Kpota, Rue {n}", "Tokoin Hôpital", "Adidogomé, Lot {n}"],
        postal: Postal::PostBox,
        currency: Currency::Xof,
    },
    Region {
        country: "Ghana",
        weight: 6,
        dial: "+233",
        mobile_prefixes: &["24", "54", "55", "20", "50"],
        subscriber_digits: 7,
        first_names: &[
            "Kwame", "Ama", "Kofi", "Akosua", "Yaw", "Abena", "Kwabena", "Efua", "Kojo", "Adwoa",
            "Nana",
        ],
        last_names: &[
            "Mensah", "Boateng", "Owusu", "Asante", "Osei", "Agyeman", "Appiah", "Ofori", "Darko",
            "Addo",
        ],
        cities: &["Accra", "Kumasi", "Tamale", "Takoradi", "Tema"],
        streets: &[
            "Oxford Street, Osu",
            "Spintex Road",
            "East Legon, Lagos Avenue",
        ],
        postal: Postal::GhanaGps,
        currency: Currency::Ghs,
    },
    Region {
        country: "Nigeria",
        weight: 5,
        dial: "+234",
        mobile_prefixes: &["803", "806", "813", "703", "905"],
        subscriber_digits: 7,
        first_names: &[
            "Chinedu",
            "Ngozi",
            "Oluwaseun",
            "Adébáyọ̀",
            "Funmilayo",
            "Emeka",
            "Aisha",
            "Tunde",
            "Chiamaka",
            "Ìfẹ́olúwa",
        ],
        last_names: &[
            "Okafor",
            "Adeyemi",
            "Balogun",
            "Eze",
            "Okonkwo",
            "Bello",
            "Adébísí",
            "Nwosu",
        ],
        cities: &["Lagos", "Abuja", "Ibadan", "Kano", "Port Harcourt"],
        streets: &[
            "Admiralty Way, Lekki",
            "Allen Avenue, Ikeja",
            "Wuse 2, Plot {n}",
        ],
        postal: Postal::Digits(6),
        currency: Currency::Ngn,
    },
    Region {
        country: "Kenya",
        weight: 4,
        dial: "+254",
        mobile_prefixes: &["712", "722", "733", "110", "798"],
        subscriber_digits: 6,
        first_names: &[
            "Wanjiru", "Kamau", "Otieno", "Achieng", "Njeri", "Mwangi", "Wambui",
        ],
        last_names: &[
            "Kamau", "Otieno", "Mwangi", "Kiprop", "Ochieng", "Wanjiku", "Njoroge",
        ],
        cities: &["Nairobi", "Mombasa", "Kisumu", "Nakuru"],
        streets: &[
            "Moi Avenue",
            "Ngong Road, Kilimani",
            "Westlands, Waiyaki Way",
        ],
        postal: Postal::Digits(5),
        currency: Currency::Kes,
    },
];

/// The region used for customers created through the API with an unknown country.
const DEFAULT_REGION: usize = 0;

const BUSINESS_KINDS: &[&str] = &[
    "Boutique",
    "Ets",
    "Établissements",
    "Pharmacie",
    "Restaurant",
    "Quincaillerie",
    "Salon",
    "Cabinet",
    "Atelier",
    "Groupe",
    "Boulangerie",
];
const BUSINESS_WORDS: &[&str] = &[
    "Teranga",
    "Baobab",
    "Sahel",
    "Jàmm",
    "Lagune",
    "Akwaba",
    "Plateau",
    "Médina",
    "Almadies",
    "Kilimanjaro",
    "Niger",
    "Savane",
    "Étoile",
    "Espoir",
    "Le Bon Goût",
];
const BUSINESS_SUFFIXES: &[&str] = &[
    "SARL",
    "SAS",
    "SA",
    "SUARL",
    "& Fils",
    "Services",
    "Import-Export",
    "",
    "",
];
const EMAIL_DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];
const TIERS: &[&str] = &["bronze", "silver", "gold"];
const TAGS: &[&str] = &[
    "vip",
    "wholesale",
    "newsletter",
    "b2b",
    "diaspora",
    "late_payer",
];
const SOURCES: &[&str] = &["pos", "web", "import", "mobile_app", "whatsapp"];
const MONTHS: &[&str] = &[
    "Janvier",
    "Février",
    "Mars",
    "Avril",
    "Mai",
    "Juin",
    "Juillet",
    "Août",
    "Septembre",
    "Octobre",
    "Novembre",
    "Décembre",
];

static WAVE: Channel = Channel {
    method: "E_WALLET",
    provider: "WAVE",
};
static ORANGE: Channel = Channel {
    method: "MOBILE_MONEY",
    provider: "ORANGE",
};
static MTN: Channel = Channel {
    method: "MOBILE_MONEY",
    provider: "MTN",
};
static MOOV: Channel = Channel {
    method: "MOBILE_MONEY",
    provider: "MOOV",
};
static MPESA: Channel = Channel {
    method: "MOBILE_MONEY",
    provider: "MPESA",
};
static CARD: Channel = Channel {
    method: "CARDS",
    provider: "STRIPE",
};
static TRANSFER: Channel = Channel {
    method: "BANK_TRANSFER",
    provider: "SPI",
};

pub(super) fn pick_region(rng: &mut Rng) -> usize {
    let weighted: Vec<(usize, u32)> = REGIONS
        .iter()
        .enumerate()
        .map(|(i, r)| (i, r.weight))
        .collect();
    *rng.weighted(&weighted)
}

/// The region of a country name given through the API (falls back to the default region).
pub(super) fn region_of_country(country: Option<&str>) -> usize {
    country
        .and_then(|c| {
            REGIONS
                .iter()
                .position(|r| r.country.eq_ignore_ascii_case(c))
        })
        .unwrap_or(DEFAULT_REGION)
}

/// About 35% never pay, 55% pay occasionally, 10% pay often.
pub(super) fn payer(rng: &mut Rng) -> Payer {
    match rng.below(100) {
        0..35 => Payer::Never,
        35..90 => Payer::Occasional,
        _ => Payer::Frequent,
    }
}

/// The mean transaction count of one payer class such that, over the class mix drawn by
/// [`payer`], customers average `per_customer` transactions.
pub(super) fn tx_mean(payer: Payer, per_customer: f64) -> f64 {
    let occasional = per_customer / (0.55 + 0.10 * Payer::FREQUENT_FACTOR);
    match payer {
        Payer::Never => 0.0,
        Payer::Occasional => occasional,
        Payer::Frequent => occasional * Payer::FREQUENT_FACTOR,
    }
}

/// A full random profile for a customer of `region`.
pub(super) fn profile(rng: &mut Rng, region: usize) -> Profile {
    let r = &REGIONS[region];
    let is_business = rng.chance(0.15);
    let name = if is_business {
        business_name(rng, r)
    } else {
        person_name(rng, r)
    };
    let email = rng
        .chance(if is_business { 0.95 } else { 0.85 })
        .then(|| email_for(rng, &name, is_business));
    let phone_number = rng.chance(0.9).then(|| phone(rng, r));
    let whatsapp_number = match rng.below(100) {
        0..40 => phone_number.clone(),
        40..55 => Some(phone(rng, r)),
        _ => None,
    };
    let country = rng.chance(0.95).then(|| r.country.to_owned());
    let city = rng.chance(0.8).then(|| (*rng.pick(r.cities)).to_owned());
    let address = rng.chance(0.45).then(|| street(rng, r));
    let postal_code = rng.chance(0.25).then(|| postal_code(rng, r));
    Profile {
        name,
        email,
        phone_number,
        whatsapp_number,
        country,
        city,
        address,
        postal_code,
        is_business,
        metadata: metadata(rng),
    }
}

/// "Prénom Nom", sometimes written the administrative way ("NOM Prénom").
fn person_name(rng: &mut Rng, r: &Region) -> String {
    let first = rng.pick(r.first_names);
    let last = rng.pick(r.last_names);
    if rng.chance(0.05) {
        format!("{} {first}", last.to_uppercase())
    } else {
        format!("{first} {last}")
    }
}

fn business_name(rng: &mut Rng, r: &Region) -> String {
    let kind = rng.pick(BUSINESS_KINDS);
    let core = if rng.chance(0.5) {
        *rng.pick(r.last_names)
    } else {
        *rng.pick(BUSINESS_WORDS)
    };
    let suffix = rng.pick(BUSINESS_SUFFIXES);
    if suffix.is_empty() {
        format!("{kind} {core}")
    } else {
        format!("{kind} {core} {suffix}")
    }
}

/// An ASCII email made from the name, in one of the forms people really use.
pub(super) fn email_for(rng: &mut Rng, name: &str, is_business: bool) -> String {
    let words: Vec<String> = name
        .split_whitespace()
        .map(ascii_fold)
        .filter(|w| !w.is_empty())
        .collect();
    let domain = rng.pick(EMAIL_DOMAINS);
    let first = words.first().map_or("client", String::as_str);
    let last = words.last().map_or("client", String::as_str);
    if is_business {
        let slug = words.join("-");
        let mailbox = rng.pick(&["contact", "info", "compta", "ventes"]);
        return format!("{mailbox}@{slug}.{domain}");
    }
    match rng.below(4) {
        0 => format!("{first}.{last}@{domain}"),
        1 => format!("{first}{last}{}@{domain}", rng.range(1, 99)),
        2 => format!("{}.{last}@{domain}", &first[..1]),
        _ => format!("{first}_{last}{}@{domain}", rng.range(1950, 2006)),
    }
}

/// Lowercase ASCII letters and digits of a word: accents dropped, apostrophes and
/// hyphens removed ("N'Diaye" -> "ndiaye", "Adébáyọ̀" -> "adebayo").
fn ascii_fold(word: &str) -> String {
    word.chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' => Some(c),
            'à' | 'á' | 'â' | 'ä' | 'ã' => Some('a'),
            'è' | 'é' | 'ê' | 'ë' | 'ẹ' => Some('e'),
            'ì' | 'í' | 'î' | 'ï' => Some('i'),
            'ò' | 'ó' | 'ô' | 'ö' | 'ọ' => Some('o'),
            'ù' | 'ú' | 'û' | 'ü' => Some('u'),
            'ç' => Some('c'),
            'ñ' => Some('n'),
            'œ' => Some('o'),
            _ => None,
        })
        .collect()
}

fn phone(rng: &mut Rng, r: &Region) -> String {
    let prefix = rng.pick(r.mobile_prefixes);
    let max = 10i64.pow(r.subscriber_digits) - 1;
    let digits = r.subscriber_digits as usize;
    let subscriber = rng.range(0, max);
    // Mostly E.164 as the docs show it; some numbers typed with spaces, as merchants do.
    if rng.chance(0.1) {
        format!("{} {prefix} {subscriber:0digits$}", r.dial)
    } else {
        format!("{}{prefix}{subscriber:0digits$}", r.dial)
    }
}

fn street(rng: &mut Rng, r: &Region) -> String {
    rng.pick(r.streets)
        .replace("{n}", &rng.range(1, 250).to_string())
}

fn postal_code(rng: &mut Rng, r: &Region) -> String {
    match r.postal {
        Postal::Digits(n) => {
            let n = n as usize;
            format!("{:0n$}", rng.range(10, 10i64.pow(n as u32) - 1))
        }
        Postal::PostBox => format!("{:02} BP {}", rng.range(1, 18), rng.range(1, 9999)),
        Postal::GhanaGps => format!(
            "{}-{:03}-{:04}",
            rng.pick(&["GA", "AK", "GT", "NT"]),
            rng.range(0, 999),
            rng.range(0, 9999)
        ),
    }
}

fn metadata(rng: &mut Rng) -> Map<String, Value> {
    let mut m = Map::new();
    if rng.chance(0.4) {
        return m;
    }
    if rng.chance(0.5) {
        m.insert(
            "internal_id".into(),
            format!("USR-{:05}", rng.range(1, 99_999)).into(),
        );
    }
    if rng.chance(0.3) {
        m.insert("tier".into(), (*rng.pick(TIERS)).into());
    }
    if rng.chance(0.25) {
        let count = rng.range(1, 3) as usize;
        let tags: Vec<Value> = rng
            .distinct(TAGS.len(), count)
            .into_iter()
            .map(|i| TAGS[i].into())
            .collect();
        m.insert("tags".into(), tags.into());
    }
    if rng.chance(0.3) {
        m.insert("source".into(), (*rng.pick(SOURCES)).into());
    }
    m
}

/// A visible change to some of name/email/city/metadata, for `update` mutations. At
/// least one field always ends up different.
pub(super) fn update_profile(rng: &mut Rng, region: usize, p: &mut Profile) {
    let r = &REGIONS[region];
    let mask = rng.range(1, 15);
    if mask & 1 != 0 {
        let name = if p.is_business {
            business_name(rng, r)
        } else {
            person_name(rng, r)
        };
        // Same-name draws happen; an added middle initial keeps the change visible.
        p.name = if name == p.name {
            format!("{name} {}.", char::from(b'A' + rng.below(26) as u8))
        } else {
            name
        };
    }
    if mask & 2 != 0 {
        let email = email_for(rng, &p.name, p.is_business);
        p.email = Some(if p.email.as_deref() == Some(email.as_str()) {
            format!("{}{email}", rng.range(1, 9))
        } else {
            email
        });
    }
    if mask & 4 != 0 {
        let others: Vec<&str> = r
            .cities
            .iter()
            .copied()
            .filter(|c| p.city.as_deref() != Some(*c))
            .collect();
        p.city = Some((*rng.pick(&others)).to_owned());
    }
    if mask & 8 != 0 {
        // Cycling the tier always changes the object.
        let next = match p.metadata.get("tier").and_then(Value::as_str) {
            Some("bronze") => "silver",
            Some("silver") => "gold",
            Some("gold") => "bronze",
            _ => "silver",
        };
        p.metadata.insert("tier".into(), next.into());
    }
}

/// Generates the history of one customer: `count` transactions between its creation and
/// the end of the data window, oldest first.
pub(super) fn history(
    rng: &mut Rng,
    region: usize,
    created_ms: i64,
    count: u32,
    next_tx_id: &mut dyn FnMut() -> u64,
) -> Vec<Tx> {
    let r = &REGIONS[region];
    let mut txs: Vec<Tx> = (0..count)
        .map(|_| {
            let at = rng.range(created_ms, DATA_END_MS);
            let currency = historical_currency(rng, r, at);
            // Recent payments may still be pending; old ones were settled long ago.
            let status = if at > DATA_END_MS - 7 * DAY_MS && rng.chance(0.35) {
                TxStatus::Pending
            } else {
                settled_status(rng)
            };
            transaction(rng, next_tx_id(), at, currency, status)
        })
        .collect();
    txs.sort_unstable_by_key(|t| (t.created_ms, t.id));
    txs
}

fn historical_currency(rng: &mut Rng, r: &Region, at_ms: i64) -> Currency {
    match rng.below(100) {
        0..4 => Currency::Usd,
        4..8 => Currency::Eur,
        _ if r.currency == Currency::Xof => Currency::Xof,
        _ if at_ms < LOCAL_CURRENCY_UNTIL_MS => r.currency,
        _ => Currency::Usd,
    }
}

fn settled_status(rng: &mut Rng) -> TxStatus {
    match rng.below(100) {
        0..82 => TxStatus::Completed,
        82..91 => TxStatus::Failed,
        91..97 => TxStatus::Expired,
        _ => TxStatus::Refunded,
    }
}

/// A new transaction made at run time by an `add_tx` mutation: mostly XOF, some USD/EUR
/// with decimals; a mix of completed and pending.
pub(super) fn new_transaction(rng: &mut Rng, region: usize, id: u64, at_ms: i64) -> Tx {
    let local = REGIONS[region].currency;
    let currency = match rng.below(100) {
        0..10 => Currency::Usd,
        10..20 => Currency::Eur,
        _ if local == Currency::Xof => Currency::Xof,
        _ => Currency::Usd,
    };
    let status = if rng.chance(0.4) {
        TxStatus::Pending
    } else {
        TxStatus::Completed
    };
    transaction(rng, id, at_ms, currency, status)
}

/// The outcome of a pending payment.
pub(super) fn settle_outcome(rng: &mut Rng) -> TxStatus {
    match rng.below(100) {
        0..75 => TxStatus::Completed,
        75..90 => TxStatus::Failed,
        _ => TxStatus::Expired,
    }
}

fn transaction(rng: &mut Rng, id: u64, at_ms: i64, currency: Currency, status: TxStatus) -> Tx {
    Tx {
        id,
        created_ms: at_ms,
        updated_ms: settled_at(id, at_ms, status),
        amount_minor: amount(rng, currency),
        currency,
        status,
        channel: channel(rng, currency),
        description: description(rng).into(),
        metadata: tx_metadata(rng).map(Box::new),
    }
}

/// When a transaction's status last changed: its creation for a pending one, minutes to
/// three days later for a settled one. Derived from the id, not drawn from the generator's
/// stream, so the rest of the data set of a seed is what it was before the feed existed.
fn settled_at(id: u64, created_ms: i64, status: TxStatus) -> i64 {
    if status == TxStatus::Pending {
        return created_ms;
    }
    created_ms + 60_000 + (mix64(id ^ 0x7365_7474_6c65_6421) % (3 * DAY_MS as u64)) as i64
}

/// An amount in minor units with the roundness real prices have.
fn amount(rng: &mut Rng, currency: Currency) -> i64 {
    match currency {
        Currency::Xof => {
            let magnitude = *rng.weighted(&[(100, 10), (1_000, 45), (10_000, 35), (100_000, 10)]);
            let raw = rng.range(magnitude, magnitude * 10);
            let step = *rng.weighted(&[(5, 15), (25, 10), (50, 20), (100, 45), (500, 10)]);
            (raw / step).max(1) * step
        }
        Currency::Usd | Currency::Eur | Currency::Ghs => {
            // A few tiny amounts (0.1, 0.5 ...) where float rounding would show first.
            let units = if rng.chance(0.02) {
                0
            } else {
                rng.range(1, 500)
            };
            let cents = match rng.below(10) {
                0..4 => 0,
                4..7 => rng.range(1, 9) * 10,
                _ => rng.range(1, 99),
            };
            if units == 0 && cents == 0 {
                10
            } else {
                units * 100 + cents
            }
        }
        Currency::Ngn => rng.range(500, 200_000) * 100,
        Currency::Kes => rng.range(50, 50_000) * 100,
    }
}

fn channel(rng: &mut Rng, currency: Currency) -> &'static Channel {
    let table: &[(&'static Channel, u32)] = match currency {
        Currency::Xof => &[
            (&WAVE, 35),
            (&ORANGE, 25),
            (&MTN, 10),
            (&MOOV, 7),
            (&CARD, 15),
            (&TRANSFER, 8),
        ],
        Currency::Usd | Currency::Eur => &[(&CARD, 85), (&TRANSFER, 15)],
        Currency::Ghs => &[(&MTN, 70), (&CARD, 30)],
        Currency::Ngn => &[(&CARD, 60), (&TRANSFER, 40)],
        Currency::Kes => &[(&MPESA, 80), (&CARD, 20)],
    };
    rng.weighted::<&'static Channel>(table)
}

fn description(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => format!("Commande #{}", rng.range(1000, 99_999)),
        1 => format!("Payment for order {}", rng.range(100, 9999)),
        2 => format!("Abonnement mensuel – {}", rng.pick(MONTHS)),
        3 => "Frais de livraison".to_owned(),
        4 => format!(
            "Facture F-{}-{:04}",
            rng.range(2023, 2026),
            rng.range(1, 9999)
        ),
        5 => "Achat en ligne".to_owned(),
        6 => format!("Réservation #{}", rng.range(100, 9999)),
        _ => format!(
            "Payment for Product {}",
            char::from(b'A' + rng.below(26) as u8)
        ),
    }
}

fn tx_metadata(rng: &mut Rng) -> Option<Map<String, Value>> {
    match rng.below(100) {
        0..65 => None,
        65..75 => Some(Map::new()),
        _ => {
            let mut m = Map::new();
            m.insert(
                "order_id".into(),
                format!("ORD-{}", rng.range(10_000, 999_999)).into(),
            );
            if rng.chance(0.5) {
                m.insert(
                    "channel".into(),
                    (*rng.pick(&["web", "pos", "whatsapp"])).into(),
                );
            }
            if rng.chance(0.2) {
                m.insert("cart".into(), json!({ "items": rng.range(1, 12) }));
            }
            Some(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_ascii_even_for_accented_names() {
        let mut rng = Rng::new(3);
        for region in 0..REGIONS.len() {
            for _ in 0..200 {
                let p = profile(&mut rng, region);
                if let Some(email) = &p.email {
                    assert!(email.is_ascii(), "{email} for {}", p.name);
                    assert!(!email.starts_with('@') && email.contains('@'), "{email}");
                }
            }
        }
        assert_eq!(ascii_fold("N'Diaye"), "ndiaye");
        assert_eq!(ascii_fold("Adébáyọ̀"), "adebayo");
        assert_eq!(ascii_fold("Ìfẹ́olúwa"), "ifeoluwa");
    }

    #[test]
    fn update_profile_always_changes_something() {
        let mut rng = Rng::new(5);
        for _ in 0..500 {
            let region = pick_region(&mut rng);
            let before = profile(&mut rng, region);
            let mut after = before.clone();
            update_profile(&mut rng, region, &mut after);
            assert_ne!(before, after);
        }
    }

    #[test]
    fn history_is_sorted_and_inside_the_window() {
        let mut rng = Rng::new(9);
        let mut next = 0;
        let mut ids = || {
            next += 1;
            next
        };
        let txs = history(&mut rng, 0, DATA_START_MS, 500, &mut ids);
        assert_eq!(txs.len(), 500);
        assert!(txs.windows(2).all(|w| w[0].created_ms <= w[1].created_ms));
        assert!(
            txs.iter()
                .all(|t| (DATA_START_MS..=DATA_END_MS).contains(&t.created_ms))
        );
    }
}
