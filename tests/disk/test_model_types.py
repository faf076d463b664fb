"""One record per model type: what it says about transformers' classes holds."""


def test_class_name_table_matches_transformers():
    """The model types' class names spare skip-map surgery the transformers import; they must equal transformers'
    own."""
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from hfprune.disk.model_types import MODEL_TYPES

    class_names = {name: t.classes for name, t in MODEL_TYPES.items() if t.classes is not None}
    text_only = {name for name, t in MODEL_TYPES.items() if not t.layout.text_config_key and not t.layout.no_skips}
    assert set(class_names) == text_only
    for model_type, (folder, config_class, model_class) in class_names.items():
        cls = CONFIG_MAPPING[model_type]
        assert (cls.__module__, cls.__name__) == (f"transformers.models.{folder}.configuration_{folder}", config_class)
        assert MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type] == model_class
