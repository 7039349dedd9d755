"""Walking If/Loop/Scan bodies: the order the layer table uses, and what bodies read."""

from __future__ import annotations

from control_flow_models import nested_model

from distprec.candidates.subgraphs import all_graphs, outer_reads, walk


def test_a_body_comes_right_after_the_node_that_holds_it_depth_first():
    model = nested_model()
    placed = [(p.node.op_type, p.parent, p.branch) for p in walk(model.graph)]
    assert placed == [
        ("Relu", "", ""), ("Loop", "", ""),
        ("Identity", "loop", "body"), ("ReduceSum", "loop", "body"),
        ("Greater", "loop", "body"), ("If", "loop", "body"),
        ("Add", "inner", "else_branch"), ("Relu", "inner", "else_branch"),  # stored order
        ("Mul", "inner", "then_branch"), ("Neg", "inner", "then_branch"),
        ("Add", "inner", "then_branch"),
        ("Tanh", "", "")]
    assert [g.name for g in all_graphs(model.graph)] == ["nested", "body", "else", "then"]


def test_outer_reads_are_what_a_body_takes_from_enclosing_scopes():
    model = nested_model()
    loop_body = next(g for g in all_graphs(model.graph) if g.name == "body")
    then = next(g for g in all_graphs(model.graph) if g.name == "then")
    other = next(g for g in all_graphs(model.graph) if g.name == "else")
    assert outer_reads(then) == {"s", "w"}  # the Loop's state and a main-graph weight
    assert outer_reads(other) == {"s", "x"}
    # the If's reads of the Loop's own input stay inside the Loop body; x, w and zero do not
    assert outer_reads(loop_body) == {"x", "w", "zero"}
