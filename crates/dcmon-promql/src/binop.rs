//! Binary operators: arithmetic, comparison (with `bool`), set operators, and vector
//! matching with `on`/`ignoring` and `group_left`/`group_right`.

use crate::QueryError;
use crate::eval::Ctx;
use crate::value::{Series, Val, VecBuilder, display, drop_name, signature};
use dcmon_wire::Labels;
use foldhash::{HashMap, HashSet};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Result<Self, QueryError> {
        Ok(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => {
                return Err(QueryError::BadData(format!(
                    "binary operator {other:?} is not supported"
                )));
            }
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// Operators whose result loses the metric name (as Prometheus 2.x: `atan2` keeps it).
    fn drops_name(self) -> bool {
        matches!(
            self,
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow
        )
    }

    fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }

    /// `(value, keep)`: arithmetic always keeps; a comparison keeps the left value when
    /// it holds.
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (l, true),
        }
    }
}

pub(crate) fn eval(ctx: &Ctx<'_>, b: &BinaryExpr, times: &[i64]) -> Result<Val, QueryError> {
    let op = Op::parse(&b.op.to_string())?;
    let modifier = b.modifier.as_ref();
    if let Some(m) = modifier {
        if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
            return Err(QueryError::BadData(
                "fill(), fill_left() and fill_right() are not supported".into(),
            ));
        }
    }
    let return_bool = modifier.is_some_and(|m| m.return_bool);
    let lhs = ctx.eval(&b.lhs, times)?;
    let rhs = ctx.eval(&b.rhs, times)?;
    let n = times.len();
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
            l.into_iter()
                .zip(r)
                .map(|(l, r)| {
                    let (v, keep) = op.apply(l, r);
                    if op.is_comparison() {
                        if keep { 1.0 } else { 0.0 }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Val::Vector(v), Val::Scalar(s)) => vector_scalar(op, v, &s, false, return_bool, n),
        (Val::Scalar(s), Val::Vector(v)) => vector_scalar(op, v, &s, true, return_bool, n),
        (Val::Vector(l), Val::Vector(r)) => {
            let (on, names) = match modifier.and_then(|m| m.matching.as_ref()) {
                Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
                Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
                None => (false, Vec::new()),
            };
            if op.is_set() {
                set_op(op, l, r, on, &names, n)
            } else {
                let card = modifier
                    .map(|m| m.card.clone())
                    .unwrap_or(VectorMatchCardinality::OneToOne);
                vector_vector(op, l, r, &card, on, &names, return_bool, n)
            }
        }
        (l, r) => Err(QueryError::BadData(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: Op,
    v: Vec<Series>,
    s: &[f64],
    scalar_left: bool,
    return_bool: bool,
    n: usize,
) -> Result<Val, QueryError> {
    let drop = op.drops_name() || return_bool;
    let mut b = VecBuilder::new(n);
    for series in v {
        let labels = if drop {
            drop_name(&series.labels)
        } else {
            series.labels
        };
        let slot = b.slot(labels);
        for (i, x) in series.vals.iter().enumerate() {
            let Some(x) = *x else { continue };
            let (l, r) = if scalar_left { (s[i], x) } else { (x, s[i]) };
            let (mut value, keep) = op.apply(l, r);
            if op.is_comparison() && scalar_left {
                // The vector element's value is the result, whichever side it is on.
                value = r;
            }
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            b.put(slot, i, value)?;
        }
    }
    Ok(Val::Vector(b.finish()))
}

/// Interns match signatures to small integers.
fn signatures(
    series: &[Series],
    on: bool,
    names: &[String],
    ids: &mut HashMap<Labels, usize>,
) -> Vec<usize> {
    series
        .iter()
        .map(|s| {
            let sig = signature(&s.labels, on, names);
            let next = ids.len();
            *ids.entry(sig).or_insert(next)
        })
        .collect()
}

fn set_op(
    op: Op,
    l: Vec<Series>,
    r: Vec<Series>,
    on: bool,
    names: &[String],
    n: usize,
) -> Result<Val, QueryError> {
    let mut ids = HashMap::default();
    let lsig = signatures(&l, on, names, &mut ids);
    let rsig = signatures(&r, on, names, &mut ids);
    let mut b = VecBuilder::new(n);
    let lslots: Vec<usize> = l.iter().map(|s| b.slot(s.labels.clone())).collect();
    let rslots: Vec<usize> = if op == Op::Or {
        r.iter().map(|s| b.slot(s.labels.clone())).collect()
    } else {
        Vec::new()
    };
    let mut present = vec![usize::MAX; ids.len()];
    for i in 0..n {
        // Which signatures the "other" side has at this step (stamped with the step).
        let (other, other_sig) = if op == Op::Or {
            (&l, &lsig)
        } else {
            (&r, &rsig)
        };
        for (s, sig) in other.iter().zip(other_sig) {
            if s.vals[i].is_some() {
                present[*sig] = i;
            }
        }
        match op {
            Op::And | Op::Unless => {
                let want = op == Op::And;
                for (k, s) in l.iter().enumerate() {
                    if let Some(v) = s.vals[i] {
                        if (present[lsig[k]] == i) == want {
                            b.put(lslots[k], i, v)?;
                        }
                    }
                }
            }
            _ => {
                for (k, s) in l.iter().enumerate() {
                    if let Some(v) = s.vals[i] {
                        b.put(lslots[k], i, v)?;
                    }
                }
                for (k, s) in r.iter().enumerate() {
                    if let Some(v) = s.vals[i] {
                        if present[rsig[k]] != i {
                            b.put(rslots[k], i, v)?;
                        }
                    }
                }
            }
        }
    }
    Ok(Val::Vector(b.finish()))
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    op: Op,
    l: Vec<Series>,
    r: Vec<Series>,
    card: &VectorMatchCardinality,
    on: bool,
    names: &[String],
    return_bool: bool,
    n: usize,
) -> Result<Val, QueryError> {
    let (include, one_to_one) = match card {
        VectorMatchCardinality::ManyToOne(ls) | VectorMatchCardinality::OneToMany(ls) => {
            (Some(ls.labels.clone()), false)
        }
        _ => (None, true),
    };
    let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (r, l) } else { (l, r) };
    let mut ids = HashMap::default();
    let msig = signatures(&many, on, names, &mut ids);
    let osig = signatures(&one, on, names, &mut ids);
    let mut b = VecBuilder::new(n);
    let mut pair_slot: HashMap<(usize, usize), usize> = HashMap::default();
    let mut one_at: Vec<(usize, usize)> = vec![(usize::MAX, 0); ids.len()];
    let mut matched: HashSet<usize> = HashSet::default();
    let mut inserted: HashSet<(usize, usize)> = HashSet::default();
    for i in 0..n {
        for (j, s) in one.iter().enumerate() {
            if s.vals[i].is_none() {
                continue;
            }
            let slot = &mut one_at[osig[j]];
            if slot.0 == i {
                let other = &one[slot.1];
                return Err(QueryError::Execution(format!(
                    "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    display(&signature(&s.labels, on, names)),
                    if swapped { "left" } else { "right" },
                    s.labels,
                    other.labels
                )));
            }
            *slot = (i, j);
        }
        matched.clear();
        inserted.clear();
        for (k, s) in many.iter().enumerate() {
            let Some(mv) = s.vals[i] else { continue };
            let sig = msig[k];
            let (step, j) = one_at[sig];
            if step != i {
                continue;
            }
            let Some(ov) = one[j].vals[i] else { continue };
            let (vl, vr) = if swapped { (ov, mv) } else { (mv, ov) };
            let (mut value, keep) = op.apply(vl, vr);
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            let slot = match pair_slot.get(&(k, j)) {
                Some(&slot) => slot,
                None => {
                    let labels = result_labels(
                        op,
                        &s.labels,
                        &one[j].labels,
                        one_to_one,
                        on,
                        names,
                        include.as_deref(),
                        return_bool,
                    );
                    let slot = b.slot(labels);
                    pair_slot.insert((k, j), slot);
                    slot
                }
            };
            if one_to_one {
                if !matched.insert(sig) {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                    ));
                }
            } else if !inserted.insert((sig, slot)) {
                return Err(QueryError::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                        .into(),
                ));
            }
            b.put(slot, i, value)?;
        }
    }
    Ok(Val::Vector(b.finish()))
}

/// The labels of one matched pair: the "many" side's, less the metric name for
/// arithmetic, restricted to the matching labels for one-to-one matching, plus the
/// `group_x` labels taken from the "one" side.
#[allow(clippy::too_many_arguments)]
fn result_labels(
    op: Op,
    many: &Labels,
    one: &Labels,
    one_to_one: bool,
    on: bool,
    names: &[String],
    include: Option<&[String]>,
    return_bool: bool,
) -> Labels {
    let mut l = if op.drops_name() || return_bool {
        drop_name(many)
    } else {
        many.clone()
    };
    if one_to_one {
        l = if on {
            crate::value::keep_only(&l, names)
        } else {
            crate::value::remove(&l, names, false)
        };
    }
    for name in include.unwrap_or_default() {
        l.set(name, one.get(name).unwrap_or(""));
    }
    l
}
