"""What is published with a model: the card (template, tables, layer map, citations, licence notices), the
Hub's eval-results files, and the recipe with local paths reduced to names."""
