//! `proxyCli list`: the rfaas images on this machine and the instance's containers.

use std::collections::HashMap;

use crate::instance::{Instance, LABEL_MANAGED, LABEL_ROLE};
use rfa_engine::Engine;

pub async fn run(instance: &Instance) -> anyhow::Result<()> {
    let engine = Engine::connect().await?;
    let images = engine
        .list_images(HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_MANAGED}=true")],
        )]))
        .await?;
    println!("IMAGES");
    let mut rows: Vec<(String, String, f64)> = images
        .iter()
        .flat_map(|i| {
            let role = i.labels.get(LABEL_ROLE).cloned().unwrap_or_default();
            i.repo_tags
                .iter()
                .map(move |t| (t.clone(), role.clone(), i.size as f64 / 1e6))
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    for (tag, role, mb) in rows {
        println!("  {tag:<40} {role:<9} {mb:>6.1} MB");
    }
    println!("CONTAINERS (instance {})", instance.label());
    let mut containers: Vec<(String, String, String)> = engine
        .list_containers(instance.filters(None))
        .await?
        .into_iter()
        .map(|c| {
            (
                crate::functions::container_name(&c),
                c.labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_ROLE).cloned())
                    .unwrap_or_default(),
                c.status.unwrap_or_default(),
            )
        })
        .collect();
    containers.sort();
    for (name, role, status) in containers {
        println!("  {name:<40} {role:<9} {status}");
    }
    Ok(())
}
